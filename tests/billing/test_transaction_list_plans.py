"""The ledger lists stay flat at any size: the customer's ledger and each filter of the staff
ledger are answered by an index in the lists' keyset order, on the first page and after a
cursor."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from tests.query_plans import assert_page_by_index, captured, keyset_plan
from vmcloud.core.pagination import encode_cursor

# Fixed, not random: it is part of the test ids, which every xdist worker must collect alike.
SOME_ID = "3f2b8c1e-5d4a-4e7b-9c6f-0a1b2c3d4e5f"
ADMIN_CASES: list[tuple[dict[str, str], str, tuple[str, ...]]] = [
    ({}, "ix_transactions_created_at_id", ()),
    ({"user_id": SOME_ID}, "ix_transactions_user_id_created_at_id", ("user_id",)),
    ({"type": "refund"}, "ix_transactions_type_created_at_id", ("type",)),
    ({"status": "failed"}, "ix_transactions_status_created_at_id", ("status",)),
    (
        {"subscription_id": SOME_ID},
        "ix_transactions_subscription_id_created_at_id",
        ("subscription_id",),
    ),
    ({"since": "2026-01-01T00:00:00Z"}, "ix_transactions_created_at_id", ("created_at",)),
    (
        {"user_id": SOME_ID, "since": "2026-01-01T00:00:00Z"},
        "ix_transactions_user_id_created_at_id",
        ("user_id", "created_at"),
    ),
]
NEXT = pytest.mark.parametrize("after_cursor", [False, True], ids=["first-page", "next-page"])


def _explained(
    client: TestClient,
    engine: Engine,
    connection: Connection,
    path: str,
    auth: dict[str, str],
    query: dict[str, str],
    after_cursor: bool,
) -> dict[str, Any]:
    params: dict[str, Any] = dict(query)
    if after_cursor:
        params["cursor"] = encode_cursor([datetime(2026, 6, 1), uuid.uuid4()])
    with captured(engine) as sent:
        response = client.get(path, params=params, headers=auth)
    assert response.status_code == 200, response.text
    return keyset_plan(connection, *sent.last("FROM transactions"))


@NEXT
def test_a_customers_ledger_page_is_read_by_index(
    client: TestClient, db: Session, engine: Engine, connection: Connection, after_cursor: bool
) -> None:
    customer = make_user(db, balance="5")
    auth = bearer(login(client, customer.username, PASSWORD))
    plan = _explained(
        client, engine, connection, "/api/v1/billing/transactions", auth, {}, after_cursor
    )
    extra = ("created_at",) if after_cursor else ()
    assert_page_by_index(plan, "ix_transactions_user_id_created_at_id", "user_id", *extra)


@NEXT
@pytest.mark.parametrize(("query", "index", "columns"), ADMIN_CASES, ids=lambda c: str(c)[:40])
def test_each_staff_ledger_filter_reads_its_page_from_an_index(
    client: TestClient,
    db: Session,
    engine: Engine,
    connection: Connection,
    query: dict[str, str],
    index: str,
    columns: tuple[str, ...],
    after_cursor: bool,
) -> None:
    admin = make_user(db, role="admin")
    auth = bearer(login(client, admin.username, PASSWORD))
    plan = _explained(
        client, engine, connection, "/api/v1/admin/transactions", auth, query, after_cursor
    )
    extra = ("created_at",) if after_cursor else ()
    assert_page_by_index(plan, index, *columns, *extra)
