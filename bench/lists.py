"""List endpoints under load, side by side with the same SQL on bare asyncpg.

On a private PostgreSQL filled by :mod:`bench.fleet` (1,000,000 instances; ``tiny``: 2,000),
the platform is served as ``vmcloud serve`` serves it (one process) and the floor
(:mod:`bench.bare_lists`, a minimal ASGI app on asyncpg running the same statements) by uvicorn
the same way; ``wrk`` drives each with 32 connections:

- ``GET /api/v1/instances``: an ordinary customer's first page (about 20 instances);
- the same for the customer with 2,000 instances (a full page of 50);
- ``GET /api/v1/admin/instances``: the first page of every instance.

Before the load, the bare app's statements are checked against the platform's own (built by
the code the endpoints run), and ``EXPLAIN (ANALYZE)`` of the big customer's page shows how
many rows it reads.

Run: ``.venv/bin/python -m bench.lists [--tiny]``
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from bench import bare_lists, fleet, load, report
from vmcloud.accounts.deps import user_and_session_query
from vmcloud.compute import service
from vmcloud.core.pagination import PageParams
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres

GOAL_RATIO = 0.40
GOAL_P99_MS = 25.0


def _numbered(sql: str) -> str:
    """psycopg's ``%(name)s`` placeholders as asyncpg's ``$n``, in order of appearance."""
    counter = iter(range(1, 1000))
    return re.sub(r"%\(\w+\)s", lambda _: f"${next(counter)}", sql)


def platform_statements() -> dict[str, str]:
    """The statements the platform sends for these requests, as its own code builds them."""
    dialect = psycopg_dialect()  # type: ignore[no-untyped-call]
    anyone = uuid.uuid4()
    page = PageParams(limit=bare_lists.LIMIT)
    built = {
        "auth": user_and_session_query(),
        "customer": service.instance_page_query(params=page, user_id=anyone),
        "admin": service.instance_page_query(params=page, staff=True),
    }
    return {name: _numbered(str(stmt.compile(dialect=dialect))) for name, stmt in built.items()}


def check_statements() -> None:
    ours = platform_statements()
    bare = {
        "auth": bare_lists.AUTH_SQL,
        "customer": bare_lists.CUSTOMER_PAGE_SQL,
        "admin": bare_lists.ADMIN_PAGE_SQL,
    }
    for name, sql in bare.items():
        if ours[name] != sql:
            raise AssertionError(
                f"bench.bare_lists runs other SQL than the platform for {name!r}:\n"
                f"platform:\n{ours[name]}\nbare:\n{sql}"
            )


@contextmanager
def bare_served(dsn: str) -> Iterator[str]:
    """The bare app under uvicorn (one process, h11 like ``vmcloud serve``)."""
    port = load.free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare_lists:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http",
        "h11",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with load.running(
        argv,
        {**os.environ, "BARE_DSN": dsn},
        what="the bare app",
        port=port,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=60,
    ) as base:
        yield base


def _login(base: str, username: str) -> str:
    response = httpx.post(
        f"{base}/api/v1/auth/login", json={"login": username, "password": fleet.PASSWORD}
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


async def _explain_big(dsn: str, user_id: uuid.UUID) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        raw = await conn.fetchval(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + bare_lists.CUSTOMER_PAGE_SQL,
            user_id,
            bare_lists.LIMIT + 1,
        )
    finally:
        await conn.close()
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    return plan


def _scans(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _scans(child)


def run(tiny: bool = False) -> list[report.Row]:
    check_statements()
    seconds = 2 if tiny else 10
    root = Path(tempfile.mkdtemp(prefix="vmc-bench-", dir="/tmp"))
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg", durable=False).start()
    rows: list[report.Row] = []
    try:
        server.create_database("vmcloud")
        url = server.url("vmcloud")
        migrate.upgrade(url)
        started = time.perf_counter()
        size = fleet.fill(url, tiny=tiny)
        filled = time.perf_counter() - started
        dsn = f"postgresql:///vmcloud?host={server.root}&port={server.port}&user={server.superuser}"
        engine = create_engine(url)
        with engine.connect() as conn:
            ids: dict[str, Any] = dict(
                conn.execute(
                    text("SELECT username, id FROM users WHERE username IN (:a, :b, :c)"),
                    {"a": fleet.SMALL, "b": fleet.BIG, "c": fleet.ADMIN},
                ).all()
            )

        plan = asyncio.run(_explain_big(dsn, ids[fleet.BIG]))
        scans = [n for n in _scans(plan["Plan"]) if n.get("Relation Name") == "instances"]
        read = sum(int(n["Actual Rows"]) for n in scans)
        by_index = all(n["Node Type"].startswith("Index") for n in scans)
        sorted_rows = any(n["Node Type"] == "Sort" for n in _scans(plan["Plan"]))
        rows.append(
            report.Row(
                f"a customer with {size.big:,} instances: rows the page query reads",
                "one page (51 rows) by an index on (owner, sort key), no sort",
                f"{read} rows, {'index' if by_index else 'NOT by index'}"
                f"{', sorted' if sorted_rows else ''}, {plan['Execution Time']:.2f} ms",
                read <= bare_lists.LIMIT + 1 and by_index and not sorted_rows,
                note=f"fleet of {size.instances:,} instances generated in {filled:.0f} s",
            )
        )

        with load.served(url) as base, bare_served(dsn) as bare:
            tokens = {name: _login(base, name) for name in (fleet.SMALL, fleet.BIG, fleet.ADMIN)}
            with engine.connect() as conn:
                sessions: dict[str, Any] = dict(
                    conn.execute(
                        text(
                            "SELECT DISTINCT ON (user_id) user_id, family_id FROM refresh_tokens"
                            " ORDER BY user_id, created_at DESC"
                        )
                    ).all()
                )
            cases = [
                ("GET /api/v1/instances, a customer's first page", fleet.SMALL, "/instances"),
                (
                    f"GET /api/v1/instances, the {size.big:,}-instance customer's first page",
                    fleet.BIG,
                    "/instances",
                ),
                ("GET /api/v1/admin/instances, first page", fleet.ADMIN, "/admin/instances"),
            ]
            for measure, who, path in cases:
                user_id = ids[who]
                headers = {"Authorization": f"Bearer {tokens[who]}"}
                ours_url = f"{base}/api/v1{path}"
                bare_url = f"{bare}{path}?user={user_id}&session={sessions[user_id]}"
                # Same rows from both, then a warm-up of each.
                a = httpx.get(ours_url, headers=headers).json()
                b = httpx.get(bare_url).json()
                if [i["id"] for i in a["items"]] != [i["id"] for i in b["items"]]:
                    raise AssertionError(f"{path}: the platform and the bare app disagree")
                load.wrk(ours_url, headers=headers, seconds=1)
                load.wrk(bare_url, seconds=1)
                ours_load = load.wrk(ours_url, headers=headers, seconds=seconds)
                bare_load = load.wrk(bare_url, seconds=seconds)
                ratio = ours_load.requests_per_second / bare_load.requests_per_second
                errors = ours_load.errors + bare_load.errors
                rows.append(
                    report.Row(
                        measure,
                        f">= {GOAL_RATIO:.0%} of bare asyncpg, p99 <= {GOAL_P99_MS:.0f} ms",
                        f"{ours_load.summary()}; bare {bare_load.summary()}; **{ratio:.0%}**",
                        ratio >= GOAL_RATIO and ours_load.p99_ms <= GOAL_P99_MS and not errors,
                        note=f"{len(a['items'])} items a page"
                        + (f", {errors} errors" if errors else ""),
                    )
                )
        engine.dispose()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows


if __name__ == "__main__":
    report.main(run)
