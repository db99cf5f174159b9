"""p99 of ``GET /api/v1/products`` and ``GET /api/v1/instances`` while clients hammer login.

A served platform (``vmcloud serve`` in a subprocess, a private PostgreSQL), a customer with
some instances (rows written directly; no hypervisor is involved in a list), and many more
customers who only log in. Each read endpoint is measured with wrk:

- alone (before and after the login runs; their mean is the baseline);
- while 4 connections POST wrong passwords from one address: after the first 30 attempts that
  address is rate limited, so this is the cost of refusing (429) as fast as clients can ask;
- while 4 connections log in with the right password, each attempt as another customer from
  another address (``X-Forwarded-For``, believed from loopback as a trusted proxy), so every
  attempt computes an argon2 hash.

Run: .venv/bin/python -m bench.login_load [--tiny]
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from bench import report
from bench.load import LoadResult, served, wrk
from vmcloud.accounts.passwords import hash_password
from vmcloud.catalog.models import Product, Region
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres

PASSWORD = "benchmark password"
READ_CONNECTIONS = 8
LOGIN_CONNECTIONS = 4
GOAL = 1.2

_WRONG_PASSWORDS = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"login": "nobody", "password": "not the password"}'
"""

# Each wrk thread walks its own stretch of the customers, each request from a new address.
_RIGHT_PASSWORDS = """
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  n = 0
end
function request()
  n = n + 1
  local user = (id * %(stride)d + n) %% %(users)d + 1
  local body = string.format('{"login": "login%%d", "password": "%(password)s"}', user)
  local address = string.format("10.%%d.%%d.%%d", id + 1, math.floor(n / 250) %% 250, n %% 250 + 1)
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["X-Forwarded-For"] = address
  return wrk.format("POST", "/api/v1/auth/login", headers, body)
end
"""


def _seed(url: str, *, instances: int, users: int) -> None:
    engine = create_engine(url)
    digest = hash_password(PASSWORD)
    with Session(engine) as db:
        region = db.scalar(select(Region.id).where(Region.slug == "local"))
        product = db.scalar(select(Product.id).where(Product.slug == "nano"))
        owner = uuid.uuid4()
        params = {"owner": owner, "hash": digest, "region": region, "product": product}
        db.execute(
            text(
                "INSERT INTO users (id, email, username, password_hash, role, status,"
                " email_verified) VALUES (:owner, 'bench@example.com', 'bench', :hash,"
                " 'customer', 'active', true)"
            ),
            params,
        )
        db.execute(
            text(
                """
                INSERT INTO users (id, email, username, password_hash, role, status,
                                   email_verified)
                SELECT gen_random_uuid(), 'login' || n || '@example.com', 'login' || n, :hash,
                       'customer', 'active', true
                  FROM generate_series(1, :users) AS n
                """
            ),
            {**params, "users": users},
        )
        db.execute(
            text(
                """
                INSERT INTO instances (id, user_id, product_id, region_id, name, hostname,
                                       ip_address, status, billing_cycle, created_at)
                SELECT gen_random_uuid(), :owner, :product, :region, 'vm-' || n, 'vm-' || n,
                       CAST('198.18.0.0' AS inet) + n, 'running', 'hourly',
                       now() - n * interval '1 minute'
                  FROM generate_series(1, :instances) AS n
                """
            ),
            {**params, "instances": instances},
        )
        db.commit()
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    engine.dispose()


def _reads(base: str, headers: dict[str, str], seconds: float) -> dict[str, LoadResult]:
    return {
        "products": wrk(f"{base}/api/v1/products", connections=READ_CONNECTIONS, seconds=seconds),
        "instances": wrk(
            f"{base}/api/v1/instances",
            headers=headers,
            connections=READ_CONNECTIONS,
            seconds=seconds,
        ),
    }


def _under(
    base: str, headers: dict[str, str], seconds: float, script: Path
) -> tuple[dict[str, LoadResult], LoadResult]:
    """The reads while wrk runs ``script`` against login for the whole time."""
    with ThreadPoolExecutor(max_workers=1) as background:
        logins: Future[LoadResult] = background.submit(
            wrk,
            f"{base}/api/v1/auth/login",
            connections=LOGIN_CONNECTIONS,
            seconds=2 * seconds + 3,
            script=script,
        )
        time.sleep(1.5)  # the login load is up before the reads start
        reads = _reads(base, headers, seconds)
        return reads, logins.result()


def run(tiny: bool = False) -> list[report.Row]:
    seconds = 2 if tiny else 5
    rounds = 1 if tiny else 3
    runs: dict[str, list[dict[str, LoadResult]]] = {"alone": [], "limited": [], "hashing": []}
    login_runs: dict[str, list[LoadResult]] = {"limited": [], "hashing": []}
    users = 2_000 if tiny else 20_000
    root = Path(tempfile.mkdtemp(prefix="vmc-bench-", dir="/tmp"))
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg", durable=False).start()
    scripts = root / "lua"
    scripts.mkdir()
    wrong = scripts / "wrong.lua"
    wrong.write_text(_WRONG_PASSWORDS)
    right = scripts / "right.lua"
    right.write_text(
        _RIGHT_PASSWORDS
        % {"stride": users // LOGIN_CONNECTIONS, "users": users, "password": PASSWORD}
    )
    try:
        server.create_database("vmcloud")
        url = server.url("vmcloud")
        migrate.upgrade(url)
        _seed(url, instances=50, users=users)
        env = {
            "VMCLOUD_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            "VMCLOUD_ACCESS_TOKEN_MINUTES": "60",
            "VMCLOUD_RATE_LIMIT_NAMESPACE": f"b{uuid.uuid4().hex[:6]}:",
        }
        with served(url, env=env) as base:
            tokens = httpx.post(
                f"{base}/api/v1/auth/login",
                json={"login": "bench", "password": PASSWORD},
                headers={"X-Forwarded-For": "192.0.2.1"},
                timeout=30,
            ).json()
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            _reads(base, headers, 1)  # warm up
            # Rounds of the three conditions in turn, so a change in the machine's load
            # (other work on it) falls on each alike; each condition's p99 is the median of
            # its rounds.
            for _ in range(rounds):
                runs["alone"].append(_reads(base, headers, seconds))
                reads, logins = _under(base, headers, seconds, wrong)
                runs["limited"].append(reads)
                login_runs["limited"].append(logins)
                reads, logins = _under(base, headers, seconds, right)
                runs["hashing"].append(reads)
                login_runs["hashing"].append(logins)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    def p99(condition: str, name: str) -> float:
        return statistics.median(r[name].p99_ms for r in runs[condition])

    def rps(condition: str, name: str) -> float:
        return statistics.median(r[name].requests_per_second for r in runs[condition])

    rows = []
    for name, path in (("products", "/api/v1/products"), ("instances", "/api/v1/instances")):
        baseline = p99("alone", name)
        each = ", ".join(f"{r[name].p99_ms:.0f}" for r in runs["alone"])
        rows.append(
            report.Row(
                f"GET {path}, {READ_CONNECTIONS} connections, alone",
                "reference",
                f"p99 {baseline:.1f} ms (rounds: {each} ms), {rps('alone', name):,.0f} req/s",
                None,
            )
        )
        for condition, label in (
            ("limited", "refused (429) logins from one address"),
            ("hashing", "logins with argon2 on every attempt"),
        ):
            ratio = p99(condition, name) / baseline
            each = ", ".join(f"{r[name].p99_ms:.0f}" for r in runs[condition])
            rows.append(
                report.Row(
                    f"GET {path} while {LOGIN_CONNECTIONS} clients hammer {label}",
                    f"p99 ≤ {GOAL}x alone",
                    f"p99 {p99(condition, name):.1f} ms ({ratio:.2f}x; rounds: {each} ms), "
                    f"{rps(condition, name):,.0f} req/s",
                    ratio <= GOAL,
                )
            )
    for condition, label in (("limited", "refused"), ("hashing", "argon2")):
        login_results = login_runs[condition]
        rows.append(
            report.Row(
                f"the login load itself ({label})",
                "reference",
                f"{statistics.median(r.requests_per_second for r in login_results):,.0f} req/s, "
                f"p99 {statistics.median(r.p99_ms for r in login_results):.1f} ms, "
                f"{sum(r.errors for r in login_results):,} non-2xx or timeouts",
                None,
            )
        )
    return rows


if __name__ == "__main__":
    report.main(run)
