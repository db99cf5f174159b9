"""Every filter of the audit-log and ledger lists at ten million rows vs ten thousand.

Each request goes through the real API in-process (``create_app`` under a ``TestClient``:
authentication, the route, the service, keyset pagination, the response model), first on the
10,000-row history, then on the 10,000,000-row one (``bench.history``); per filter the median
of many requests, after enough warm-up runs for psycopg to prepare the statement (from the
fifth run), so the plan measured is the one production keeps. Goal: the 10M time within 1.5 times
of the 10k time.

``VMCLOUD_BENCH_PLANS=<file>`` also writes each filter's ``EXPLAIN (ANALYZE, BUFFERS)`` at the
large size (the statement the endpoint sent, with its values) to that file.

Run: ``.venv/bin/python -m bench.filters [--tiny]`` (tiny: 1,000 vs 10,000 rows).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from bench import report
from bench.history import (
    LARGE,
    RARE_ACTION,
    RARE_ENTITY_TYPE,
    RARE_STATUS,
    RARE_TYPE,
    SMALL,
    SPAN_SECONDS,
    START,
    History,
    cluster,
    history,
)
from vmcloud.accounts.passwords import hash_password
from vmcloud.app import create_app
from vmcloud.config import Settings
from vmcloud.db.session import make_engine, make_session_factory

PASSWORD = "benchmark password"
AUDIT = "/api/v1/admin/audit-logs"
LEDGER = "/api/v1/admin/transactions"
OWN = "/api/v1/billing/transactions"
END = START + timedelta(seconds=SPAN_SECONDS)
HEAVY_USER = "md5('u0')::uuid"  # the busiest customer by construction (u = users * r^2)


def _iso(moment: Any) -> str:
    return f"{moment.isoformat()}Z"


@dataclass(frozen=True)
class Case:
    label: str
    path: str
    query: dict[str, Any]
    as_customer: bool = False
    next_page: bool = False  # measure the page after the first (keyset cursor)


def _cases(values: dict[str, str]) -> list[Case]:
    user, entity, sub = values["user"], values["entity"], values["subscription"]
    return [
        Case("audit: no filter", AUDIT, {}),
        Case("audit: no filter, next page", AUDIT, {}, next_page=True),
        Case("audit: user_id (busiest user)", AUDIT, {"user_id": user}),
        Case("audit: user_id, next page", AUDIT, {"user_id": user}, next_page=True),
        Case(f"audit: action={RARE_ACTION} (0.05 %)", AUDIT, {"action": RARE_ACTION}),
        Case("audit: action=instance.update (35 %)", AUDIT, {"action": "instance.update"}),
        Case(
            f"audit: entity_type={RARE_ENTITY_TYPE} (0.1 %)",
            AUDIT,
            {"entity_type": RARE_ENTITY_TYPE},
        ),
        Case("audit: entity_id", AUDIT, {"entity_id": entity}),
        Case("audit: since (last day)", AUDIT, {"since": _iso(END - timedelta(days=1))}),
        Case("audit: until (first month)", AUDIT, {"until": _iso(START + timedelta(days=30))}),
        Case(
            f"audit: action={RARE_ACTION} + since (last 90 days)",
            AUDIT,
            {"action": RARE_ACTION, "since": _iso(END - timedelta(days=90))},
        ),
        Case("ledger: a customer's own (busiest)", OWN, {}, as_customer=True),
        Case("ledger: a customer's own, next page", OWN, {}, as_customer=True, next_page=True),
        Case("staff ledger: no filter", LEDGER, {}),
        Case("staff ledger: user_id (busiest)", LEDGER, {"user_id": user}),
        Case(f"staff ledger: type={RARE_TYPE} (0.2 %)", LEDGER, {"type": RARE_TYPE}),
        Case("staff ledger: type=charge (90 %)", LEDGER, {"type": "charge"}),
        Case(f"staff ledger: status={RARE_STATUS} (0.2 %)", LEDGER, {"status": RARE_STATUS}),
        Case("staff ledger: status=completed (97 %)", LEDGER, {"status": "completed"}),
        Case("staff ledger: subscription_id", LEDGER, {"subscription_id": sub}),
    ]


@dataclass
class Session:
    client: TestClient
    admin: dict[str, str]
    customer: dict[str, str]
    values: dict[str, str]
    statements: list[tuple[str, Any]]


@contextmanager
def _served(made: History, data_dir: Path) -> Iterator[Session]:
    hashed = hash_password(PASSWORD)
    with psycopg.connect(made.conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (email, username, password_hash, role, status, email_verified)"
            " VALUES ('admin@bench.example', 'benchadmin', %s, 'admin', 'active', true)"
            " ON CONFLICT DO NOTHING",
            (hashed,),
        )
        conn.execute(f"UPDATE users SET password_hash = %s WHERE id = {HEAVY_USER}", (hashed,))
        row = conn.execute(
            f"SELECT {HEAVY_USER}::text, md5('e0')::uuid::text, md5('s0')::uuid::text,"
            f" (SELECT username FROM users WHERE id = {HEAVY_USER})"
        ).fetchone()
    assert row is not None
    values = {"user": row[0], "entity": row[1], "subscription": row[2]}
    settings = Settings(data_dir=data_dir, database_url=made.url, db_pool_size=4)
    engine = make_engine(settings)
    statements: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    app = create_app(settings, engine=engine, session_factory=make_session_factory(engine))
    try:
        with TestClient(app, client=("198.51.100.201", 1)) as client:

            def token(login: str) -> dict[str, str]:
                body = client.post(
                    "/api/v1/auth/login", json={"login": login, "password": PASSWORD}
                ).json()
                return {"Authorization": f"Bearer {body['access_token']}"}

            session = Session(client, token("benchadmin"), token(row[3]), values, statements)
            for _ in range(20):  # the app's first requests pay for imports and pool connections
                client.get(AUDIT, params={"limit": 1}, headers=session.admin)
            yield session
    finally:
        engine.dispose()


def _timed(
    session: Session, case: Case, runs: int, limit: int | None = None
) -> tuple[float, tuple[str, Any], int]:
    """Median milliseconds of ``runs`` requests of ``case`` (after warming up), the list
    statement the last one sent, and how many items a page held. ``limit`` asks for pages of
    that many items (the API's default otherwise)."""
    headers = session.customer if case.as_customer else session.admin
    query = dict(case.query)
    if limit is not None:
        query["limit"] = limit
    if case.next_page:
        first = session.client.get(case.path, params=query, headers=headers).json()
        query["cursor"] = first["next_cursor"]
    times = []
    items = 0
    for n in range(runs + 6):
        del session.statements[:]
        started = time.perf_counter()
        response = session.client.get(case.path, params=query, headers=headers)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, (case, response.text)
        items = len(response.json()["items"])
        if n >= 6:
            times.append(elapsed * 1000)
    table = "audit_logs" if case.path == AUDIT else "transactions"
    sent = [s for s in session.statements if f"FROM {table}" in s[0]][-1]
    return statistics.median(times), sent, items


def _explain(made: History, sent: tuple[str, Any]) -> str:
    engine = make_engine(Settings(database_url=made.url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SET plan_cache_mode = force_custom_plan"))
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sent[0], sent[1])
            return "\n".join(r[0] for r in rows)
    finally:
        engine.dispose()


def run(tiny: bool = False) -> list[report.Row]:
    small_rows, large_rows = (1_000, SMALL) if tiny else (SMALL, LARGE)
    runs = 5 if tiny else 41
    plans_file = os.environ.get("VMCLOUD_BENCH_PLANS")
    measured: dict[str, list[float]] = {}
    # A rare value has fewer rows than a page in the small history: the large one is then
    # asked for pages of the same size, so both sides serialise the same number of items and
    # the ratio is the query's, not the response's length.
    items: dict[str, int] = {}
    plans: list[str] = []
    with cluster() as server:
        for size in (small_rows, large_rows):
            made = history(server, size)
            with (
                tempfile.TemporaryDirectory(prefix="vmc-filters-") as data_dir,
                _served(made, Path(data_dir)) as session,
            ):
                for case in _cases(session.values):
                    limit = max(1, items[case.label]) if size == large_rows else None
                    ms, sent, count = _timed(session, case, runs, limit)
                    items.setdefault(case.label, count)
                    measured.setdefault(case.label, []).append(ms)
                    if size == large_rows and plans_file:
                        plans.append(f"-- {case.label}\n{_explain(made, sent)}\n")
    if plans_file:
        Path(plans_file).write_text("\n".join(plans))
    rows = []
    for label, (small_ms, large_ms) in measured.items():
        ratio = large_ms / small_ms
        rows.append(
            report.Row(
                label,
                "≤ 1.5 x the time at 10k rows",
                f"{large_ms:.2f} ms at {large_rows:,} vs {small_ms:.2f} ms at {small_rows:,} "
                f"({ratio:.2f} x), pages of {items[label]} items",
                ratio <= 1.5,
            )
        )
    return rows


if __name__ == "__main__":
    report.main(run)
