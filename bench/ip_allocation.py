"""One IP allocation with 1,000 vs 830,000 addresses in use in a /12.

On a private PostgreSQL with the real schema: one customer, a /12 pool, and live instances
holding the pool's first N host addresses (set-based ``INSERT … SELECT generate_series``), the
pool's free list rebuilt once (``ips.resync``, what ``vmcloud pools resync`` does after an
import). Then allocations as an order makes them (``ips.allocate``, the instance row, commit),
timing ``allocate`` alone; the first one refills a chunk of the list. Reference: reading the
whole used set, as allocation did before the free list.

Run: .venv/bin/python -m bench.ip_allocation [--tiny]
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session

from bench import report
from vmcloud.catalog.models import Product, Region
from vmcloud.compute import ips
from vmcloud.compute.models import Instance, IpPool
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres

CIDR = "10.16.0.0/12"
GATEWAY = "10.16.0.1"


def _fill(
    engine: Engine, pool_id: uuid.UUID, owner: uuid.UUID, product: uuid.UUID, upto: int
) -> None:
    """Live instances on host offsets 2 .. upto + 1 (offset 1 is the gateway)."""
    with engine.begin() as conn:
        done = conn.execute(text("SELECT count(*) FROM instances")).scalar_one()
        conn.execute(
            text(
                """
                INSERT INTO instances (id, user_id, product_id, name, ip_address, status)
                SELECT gen_random_uuid(), :owner, :product, 'vm-' || n,
                       CAST('10.16.0.0' AS inet) + n, 'running'
                  FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS n
                """
            ),
            {"owner": owner, "product": product, "start": done + 2, "stop": upto + 1},
        )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    with Session(engine) as db:
        pool = db.get(IpPool, pool_id)
        assert pool is not None
        ips.resync(db=db, pool=pool)
        db.commit()


def _allocate_once(
    engine: Engine, region: uuid.UUID, owner: uuid.UUID, product: uuid.UUID
) -> float:
    """One allocation as an order makes it (then the instance row, commit); its time."""
    with Session(engine) as db:
        started = time.perf_counter()
        lease = ips.allocate(db=db, region_id=region)
        elapsed = time.perf_counter() - started
        db.add(
            Instance(
                id=uuid.uuid4(), user_id=owner, product_id=product, name="bench",
                ip_address=lease.address, status="pending",
            )
        )  # fmt: skip
        db.commit()
    return elapsed


def _old_way(engine: Engine) -> float:
    """What allocation read before the free list: every live address, into a Python set."""
    started = time.perf_counter()
    with Session(engine) as db:
        used = {
            str(ip)
            for ip in db.scalars(
                select(Instance.ip_address).where(
                    Instance.deleted_at.is_(None), Instance.ip_address.is_not(None)
                )
            )
        }
    assert used
    return time.perf_counter() - started


def _plans(engine: Engine, pool_id: uuid.UUID) -> str:
    """Taking the first free address, and checking it against live instances."""
    plans = []
    with engine.connect() as conn:
        address = conn.execute(ips._TAKE, {"pool": pool_id}).scalar_one()
        conn.rollback()
        for statement, params in (
            (ips._TAKE, {"pool": pool_id}),
            (ips._IN_USE, {"address": address}),
        ):
            rows = conn.execute(
                text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + str(statement)), params
            ).scalars()
            plans.append("\n".join(rows))
            conn.rollback()
    return "\n\n".join(plans)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def run(tiny: bool = False) -> list[report.Row]:
    small, large = (100, 2_000) if tiny else (1_000, 830_000)
    count = 20 if tiny else 200
    root = Path(tempfile.mkdtemp(prefix="vmc-bench-", dir="/tmp"))
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg", durable=False).start()
    try:
        server.create_database("seed")
        migrate.upgrade(server.url("seed"))
        seed = create_engine(server.url("seed"))
        owner, pool_id = uuid.uuid4(), uuid.uuid4()
        with Session(seed) as db:
            region = db.scalar(select(Region.id).where(Region.slug == "local"))
            product = db.scalar(select(Product.id).limit(1))
            db.execute(
                text(
                    "INSERT INTO users (id, email, username, password_hash, role, status,"
                    " email_verified) VALUES (:id, 'ips@example.com', 'ips', 'x', 'customer',"
                    " 'active', true)"
                ),
                {"id": owner},
            )
            db.add(IpPool(id=pool_id, region_id=region, name="bench", cidr=CIDR, gateway=GATEWAY))
            db.commit()
        seed.dispose()
        assert region is not None and product is not None
        engines, setups = {}, {}
        for used in (small, large):
            server.create_database(f"used{used}", template="seed")
            engines[used] = create_engine(server.url(f"used{used}"), pool_size=2)
            started = time.perf_counter()
            _fill(engines[used], pool_id, owner, product, used)
            setups[used] = time.perf_counter() - started
        # The first allocation after the resync lists a chunk; the rest take from it. The two
        # databases take turns, so a change in the machine's load hits both alike.
        timings: dict[int, list[float]] = {small: [], large: []}
        for _ in range(count + 1):
            for used in (small, large):
                timings[used].append(_allocate_once(engines[used], region, owner, product))
        results = {
            used: (timings[used][1:], timings[used][0], setups[used], _old_way(engines[used]))
            for used in (small, large)
        }
        plan = _plans(engines[large], pool_id)
        for engine in engines.values():
            engine.dispose()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    few, few_first, few_setup, few_old = results[small]
    many, many_first, many_setup, many_old = results[large]
    ratio = statistics.median(many) / statistics.median(few)
    rows = [
        report.Row(
            f"IP allocation, {small:,} vs {large:,} addresses in use (/12), median of {count}",
            "independent of the used count (≤ 1.5x)",
            f"{_ms(statistics.median(few))} vs {_ms(statistics.median(many))} ({ratio:.2f}x)",
            ratio <= 1.5,
        ),
        report.Row(
            f"IP allocation, slowest of those {count}",
            "independent of the used count",
            f"{_ms(max(few))} vs {_ms(max(many))}",
            None,
        ),
        report.Row(
            f"IP allocation that lists the next chunk ({ips.CHUNK:,} addresses, once per chunk)",
            "independent of the used count",
            f"{_ms(few_first)} vs {_ms(many_first)}",
            None,
            "the very first allocation, at the smaller count, also compiles the SQL",
        ),
        report.Row(
            "reference: reading the used set into Python (allocation before the free list)",
            "—",
            f"{_ms(few_old)} vs {_ms(many_old)}",
            None,
        ),
        report.Row(
            "set-up: instances inserted + VACUUM ANALYZE + pools resync",
            "—",
            f"{few_setup:.1f} s, then {many_setup:.1f} s",
            None,
        ),
    ]
    print(f"plans at {large:,} used:\n{plan}")
    return rows


if __name__ == "__main__":
    report.main(run)
