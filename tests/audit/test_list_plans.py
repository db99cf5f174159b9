"""The admin audit list stays flat at any size: each filter the endpoint offers is answered by
an index in the list's keyset order, on the first page and after a cursor, and a prepared
statement keeps getting plans made for its actual values."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from tests.query_plans import assert_page_by_index, captured, keyset_plan
from vmcloud.audit.models import AuditLog
from vmcloud.core.pagination import encode_cursor

AUDIT = "/api/v1/admin/audit-logs"
# Fixed, not random: it is part of the test ids, which every xdist worker must collect alike.
SOME_ID = "3f2b8c1e-5d4a-4e7b-9c6f-0a1b2c3d4e5f"
CASES: list[tuple[dict[str, str], str, tuple[str, ...]]] = [
    ({}, "ix_audit_logs_timestamp_id", ()),
    ({"user_id": SOME_ID}, "ix_audit_logs_user_id_timestamp_id", ("user_id",)),
    ({"action": "instance.rare"}, "ix_audit_logs_action_timestamp_id", ("action",)),
    ({"entity_type": "instance"}, "ix_audit_logs_entity_type_timestamp_id", ("entity_type",)),
    ({"entity_id": SOME_ID}, "ix_audit_logs_entity_id_timestamp_id", ("entity_id",)),
    ({"since": "2026-01-01T00:00:00Z"}, "ix_audit_logs_timestamp_id", ("timestamp",)),
    ({"until": "2026-01-01T00:00:00Z"}, "ix_audit_logs_timestamp_id", ("timestamp",)),
    (
        {"action": "instance.rare", "since": "2026-01-01T00:00:00Z"},
        "ix_audit_logs_action_timestamp_id",
        ("action", "timestamp"),
    ),
]


@pytest.fixture
def admin_auth(client: TestClient, db: Session) -> dict[str, str]:
    admin = make_user(db, role="admin")
    return bearer(login(client, admin.username, PASSWORD))


@pytest.mark.parametrize("after_cursor", [False, True], ids=["first-page", "next-page"])
@pytest.mark.parametrize(("query", "index", "columns"), CASES, ids=lambda c: str(c)[:40])
def test_each_filter_reads_its_page_from_an_index(
    client: TestClient,
    admin_auth: dict[str, str],
    engine: Engine,
    connection: Connection,
    query: dict[str, str],
    index: str,
    columns: tuple[str, ...],
    after_cursor: bool,
) -> None:
    _analysed_history(connection)
    params: dict[str, Any] = dict(query)
    if after_cursor:
        params["cursor"] = encode_cursor([datetime(2026, 6, 1), uuid.uuid4()])
    with captured(engine) as sent:
        response = client.get(AUDIT, params=params, headers=admin_auth)
    assert response.status_code == 200, response.text
    plan = keyset_plan(connection, *sent.last("FROM audit_logs"))
    # After a cursor the keyset bound is part of the index condition, not a filter on rows.
    assert_page_by_index(plan, index, *columns, *(("timestamp",) if after_cursor else ()))


def _analysed_history(connection: Connection) -> None:
    """A history like a real log's, analysed inside the test's own transaction (rolled back
    with it): the filtered values are rare, the common ones many, the dates spread over a year
    and a half. On a table of a few rows every index costs about the same, and the planner's
    pick then varied with what other tests had left in the table and with statistics (ANALYZE
    writes the row count in place, outside any transaction)."""
    connection.execute(
        text(
            "INSERT INTO audit_logs (action, entity_type, entity_id, user_id, timestamp)"
            " SELECT (ARRAY['instance.common', 'user.login', 'setting.update'])[1 + n % 3],"
            "  (ARRAY['setting', 'user', 'node'])[1 + n % 3],"
            "  CASE WHEN n % 2 = 0 THEN gen_random_uuid() END,"
            "  CASE WHEN n % 3 = 0 THEN (SELECT min(id::text)::uuid FROM users) END,"
            "  timestamp '2025-06-01' + n * interval '4 hours'"
            " FROM generate_series(1, 3000) AS n"
        )
    )
    connection.execute(text("ANALYZE audit_logs"))


def test_a_prepared_list_keeps_custom_plans(
    client: TestClient, admin_auth: dict[str, str], db: Session, connection: Connection
) -> None:
    """psycopg prepares a statement from its fifth run; PostgreSQL may then switch it to one
    generic plan for every value (a parallel scan, far slower for a rare action). The
    connection's ``plan_cache_mode`` keeps a plan made for each request's value."""
    start = datetime(2026, 1, 1)
    for n in range(40):
        action = "instance.rare" if n % 20 == 0 else "instance.common"
        db.add(AuditLog(action=action, timestamp=start + timedelta(minutes=n)))
    db.flush()
    connection.execute(text("ANALYZE audit_logs"))
    assert connection.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
    for n in range(12):
        action = "instance.rare" if n % 2 else "instance.common"
        response = client.get(AUDIT, params={"action": action, "limit": 5}, headers=admin_auth)
        assert response.status_code == 200, response.text
        assert {item["action"] for item in response.json()["items"]} == {action}
    prepared = connection.execute(
        text(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%FROM audit_logs%' AND statement LIKE '%action =%'"
        )
    ).all()
    assert prepared, "the list statement was never prepared: the check proves nothing"
    assert [generic for generic, _ in prepared] == [0] * len(prepared)
    assert sum(custom for _, custom in prepared) >= 12 - 5
