"""Generated history for the list and ledger benchmarks: audit rows and ledger entries.

``history(audit_rows, ledger_rows)`` yields a private PostgreSQL (``durable=False``) with the
real schema (migrations) holding, over two years:

- ``rows / 200`` customers (50,000 at ten million rows), two hourly subscriptions each; a
  customer's share of the rows is skewed (``u = users · r²``), so the busiest has a long
  history (about 45,000 rows at ten million);
- audit rows: common actions (``instance.update``, ``user.login``, ...), a rare one
  (``user.suspend``, 0.05 %) and a rare entity type (``setting``, 0.1 %); 10 % by the system (no
  user); each entity about 20 rows;
- ledger entries: 90 % charges of a subscription, then payments, credits, refunds and a rare
  type (``debit``, 0.2 %); 97 % completed, then failed, pending and a rare status
  (``cancelled``, 0.2 %); each balance equals its ledger (a credit tops up any customer whose
  entries would leave them below one).

Set-based (``INSERT … SELECT generate_series``), with the secondary indexes of both tables
dropped during the load and rebuilt after it, and foreign keys unchecked while loading (the
generator only writes references that exist): ten million rows of each take minutes.

``VMCLOUD_BENCH_HISTORY`` names a directory to keep the generated cluster in between runs
(generated once per size); without it, each run generates into a temporary directory.

Run alone: ``.venv/bin/python -m bench.history [--tiny]`` (generates and counts).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from bench import report
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres

START = datetime(2024, 12, 1)  # noqa: DTZ001 - naive UTC, as the schema keeps; two years of history, ending when the checks begin
SPAN_SECONDS = 2 * 365 * 24 * 3600
RARE_ACTION = "user.suspend"
RARE_ENTITY_TYPE = "setting"
RARE_TYPE = "debit"
RARE_STATUS = "cancelled"
LARGE = 10_000_000
SMALL = 10_000

_SETUP = [
    "SET maintenance_work_mem = '512MB'",
    "SET max_parallel_maintenance_workers = 2",
    "SET session_replication_role = replica",  # no foreign-key or audit triggers while loading
]

_USERS = """
INSERT INTO users (id, email, username, password_hash, role, status, email_verified, balance,
                   created_at)
SELECT md5('u' || n)::uuid, 'h' || n || '@example.com', 'h' || n, 'x', 'customer', 'active',
       true, 0, %(start)s
  FROM generate_series(0, %(users)s - 1) AS n
"""

_SUBSCRIPTIONS = """
INSERT INTO subscriptions (id, user_id, type, price, currency, status, period_start, period_end,
                           rate, created_at)
SELECT md5('s' || n)::uuid, md5('u' || (n / 2))::uuid, 'hourly', 10.95, 'USD',
       CASE WHEN n %% 10 = 0 THEN 'cancelled' ELSE 'active' END,
       %(end)s - interval '1 hour', %(end)s, 0.015, %(start)s
  FROM generate_series(0, %(users)s * 2 - 1) AS n
"""

# Ids follow insertion order (as a time-ordered id would), so loading appends to the primary key.
_AUDIT = """
INSERT INTO audit_logs (id, user_id, action, entity_type, entity_id, old_values, new_values,
                        ip_address, user_agent, timestamp)
SELECT lpad(to_hex(g.n), 32, '0')::uuid,
       CASE WHEN g.r < 0.1 THEN NULL ELSE md5('u' || g.u)::uuid END,
       a.action, split_part(a.action, '.', 1), md5('e' || (g.n %% %(entities)s))::uuid,
       '{"status": "stopped"}'::jsonb, '{"status": "running"}'::jsonb,
       ('198.51.100.' || (g.n %% 250))::inet, 'Mozilla/5.0 (X11; Linux x86_64) bench',
       %(start)s + g.n * %(step)s * interval '1 second'
  FROM (SELECT n, floor(%(users)s * power(random(), 2))::int AS u, random() AS r,
               random() AS a
          FROM generate_series(1, %(rows)s) AS n) AS g
 CROSS JOIN LATERAL (SELECT CASE WHEN g.a < 0.35 THEN 'instance.update'
                                 WHEN g.a < 0.55 THEN 'user.login'
                                 WHEN g.a < 0.70 THEN 'transaction.create'
                                 WHEN g.a < 0.85 THEN 'subscription.update'
                                 WHEN g.a < 0.95 THEN 'instance.create'
                                 WHEN g.a < 0.9985 THEN 'instance.delete'
                                 WHEN g.a < 0.9995 THEN 'setting.update'
                                 ELSE 'user.suspend' END AS action) AS a
"""

_LEDGER = """
INSERT INTO transactions (id, user_id, subscription_id, amount, currency, type, status,
                          payment_method, payment_provider, processed_at, created_at)
SELECT lpad(to_hex(g.n), 32, '0')::uuid, md5('u' || g.u)::uuid,
       CASE WHEN k.type = 'charge' THEN md5('s' || (g.u * 2 + g.n %% 2))::uuid END,
       CASE WHEN k.type = 'charge' THEN round((0.01 + g.x * 0.5)::numeric, 2)
            ELSE round((5 + g.x * 50)::numeric, 2) END,
       'USD', k.type, k.status,
       CASE WHEN k.type = 'payment' THEN 'card' ELSE 'balance' END,
       CASE WHEN k.type = 'payment' THEN 'sandbox' ELSE 'manual' END,
       CASE WHEN k.status = 'completed' THEN g.ts END, g.ts
  FROM (SELECT n, floor(%(users)s * power(random(), 2))::int AS u, random() AS r,
               random() AS s, random() AS x,
               %(start)s + n * %(step)s * interval '1 second' AS ts
          FROM generate_series(1, %(rows)s) AS n) AS g
 CROSS JOIN LATERAL (SELECT CASE WHEN g.r < 0.90 THEN 'charge'
                                 WHEN g.r < 0.96 THEN 'payment'
                                 WHEN g.r < 0.99 THEN 'credit'
                                 WHEN g.r < 0.998 THEN 'refund'
                                 ELSE 'debit' END AS type,
                            CASE WHEN g.s < 0.97 THEN 'completed'
                                 WHEN g.s < 0.985 THEN 'failed'
                                 WHEN g.s < 0.998 THEN 'pending'
                                 ELSE 'cancelled' END AS status) AS k
"""

_SUMS = """
CREATE TEMP TABLE sums AS
SELECT user_id, SUM(CASE WHEN type IN ('payment', 'credit', 'refund') THEN amount
                         ELSE -amount END) AS total
  FROM transactions WHERE status = 'completed' GROUP BY user_id
"""

_TOP_UP = """
INSERT INTO transactions (id, user_id, amount, currency, type, status, payment_method,
                          payment_provider, processed_at, created_at)
SELECT gen_random_uuid(), user_id, 1 - total, 'USD', 'credit', 'completed', 'manual', 'manual',
       %(start)s, %(start)s
  FROM sums WHERE total < 1
"""

_BALANCES = """
UPDATE users u SET balance = GREATEST(s.total, 1)
  FROM sums s WHERE s.user_id = u.id
"""


@dataclass(frozen=True)
class History:
    server: EmbeddedPostgres
    dbname: str
    audit_rows: int
    ledger_rows: int
    users: int
    seconds: float  # generation time (0 when reused)

    @property
    def url(self) -> str:
        return self.server.url(self.dbname)

    @property
    def conninfo(self) -> str:
        return self.server.conninfo(self.dbname)


def _secondary_indexes(conn: psycopg.Connection, tables: tuple[str, ...]) -> list[str]:
    rows = conn.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
         WHERE i.schemaname = 'public' AND i.tablename = ANY(%s)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
        """,
        (list(tables),),
    ).fetchall()
    for name, _definition in rows:
        conn.execute(f'DROP INDEX "{name}"')
    return [definition for _name, definition in rows]


def generate(server: EmbeddedPostgres, dbname: str, rows: int) -> History:
    """A migrated database ``dbname`` with ``rows`` audit rows and ``rows`` ledger entries."""
    started = time.perf_counter()
    server.create_database(dbname)
    migrate.upgrade(server.url(dbname))
    users = max(rows // 200, 20)
    params = {
        "users": users,
        "rows": rows,
        "entities": max(rows // 20, 1),
        "start": START,
        "end": START.replace(year=START.year + 2),
        "step": SPAN_SECONDS / rows,
    }
    with psycopg.connect(server.conninfo(dbname), autocommit=True) as conn:
        for statement in _SETUP:
            conn.execute(statement)
        rebuild = _secondary_indexes(conn, ("audit_logs", "transactions"))
        for statement in (_USERS, _SUBSCRIPTIONS, _AUDIT, _LEDGER):
            conn.execute(statement, params)
        for statement in (_SUMS, _TOP_UP, _BALANCES):
            conn.execute(statement, params)
        for definition in rebuild:
            conn.execute(definition)
        conn.execute("VACUUM (ANALYZE)")
    return History(server, dbname, rows, rows, users, time.perf_counter() - started)


def _counts(server: EmbeddedPostgres, dbname: str) -> tuple[int, int, int] | None:
    try:
        with psycopg.connect(server.conninfo(dbname)) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM audit_logs), (SELECT count(*) FROM transactions),"
                " (SELECT count(*) FROM users WHERE role = 'customer')"
            ).fetchone()
    except psycopg.OperationalError:
        return None
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


@contextmanager
def cluster() -> Iterator[EmbeddedPostgres]:
    """The benchmark's private cluster: kept in ``$VMCLOUD_BENCH_HISTORY`` if set."""
    keep = os.environ.get("VMCLOUD_BENCH_HISTORY")
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="vmc-hist-", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg", durable=False).start()
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
            conn.execute("SELECT pg_reload_conf()")
        yield server
    finally:
        server.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def history(server: EmbeddedPostgres, rows: int) -> History:
    """The database of ``rows`` rows in ``server``: generated, or reused when already there
    (only a kept cluster has one)."""
    dbname = f"history_{rows}"
    found = _counts(server, dbname)
    if found is not None and found[0] >= rows and found[1] >= rows:
        return History(server, dbname, found[0], found[1], found[2], 0.0)
    server.drop_database(dbname)
    return generate(server, dbname, rows)


def run(tiny: bool = False) -> list[report.Row]:
    rows = SMALL if tiny else LARGE
    with cluster() as server:
        made = history(server, rows)
    return [
        report.Row(
            f"generate {made.audit_rows:,} audit rows and {made.ledger_rows:,} ledger entries "
            f"({made.users:,} customers)",
            "minutes, not hours",
            f"{made.seconds:.0f} s" if made.seconds else "reused",
            made.seconds < 3600 if made.seconds else None,
        )
    ]


if __name__ == "__main__":
    report.main(run)
