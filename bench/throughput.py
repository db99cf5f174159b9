"""Instances created per minute end to end with the in-memory driver: API, database, queue
and workers, without hypervisor time.

Run: .venv/bin/python -m bench.throughput [--tiny]
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bench import report
from bench.harness import platform
from vmcloud.catalog.models import Region
from vmcloud.compute.models import IpPool, Node
from vmcloud.site_settings.models import Setting

INSTANCES = 200
TINY_INSTANCES = 20
CLIENTS = 8
GOAL_PER_MINUTE = 600  # "hold >= 600" (1,783 / min before step 9)


def _prepare(instances: int) -> object:
    def prepare(db: Session, _root: Path) -> None:
        region = db.scalar(select(Region).where(Region.slug == "local"))
        assert region is not None
        db.add(
            Node(
                name="fake-bench",
                region_id=region.id,
                driver="fake",
                uri="fake://bench",
                storage_dir="/nowhere",
                vcpus=10_000,
                memory_mb=10_000_000,
                disk_gb=10_000_000,
            )
        )
        db.add(
            IpPool(name="bench", region_id=region.id, cidr="10.128.0.0/16", gateway="10.128.0.1")
        )
        db.execute(
            update(Setting)
            .where(Setting.key == "compute.max_instances_per_user")
            .values(value=str(instances))
        )

    return prepare


def run(tiny: bool = False) -> list[report.Row]:
    instances = TINY_INSTANCES if tiny else INSTANCES
    with platform(_prepare(instances), concurrency=8) as p:
        order = {
            "name": "t",
            "product": "nano",
            "region": "local",
            "image": "tiny-linux",
            "billing_cycle": "hourly",
        }

        def create(_: int) -> str:
            response = p.client.post("/api/v1/instances", json=order, headers=p.headers)
            if response.status_code != 202:
                raise RuntimeError(f"create refused: {response.status_code} {response.text}")
            return str(response.json()["id"])

        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            ids = list(pool.map(create, range(instances)))
        accepted = time.monotonic() - started
        for instance_id in ids:
            p.wait_for(instance_id, "running", timeout=600)
        elapsed = time.monotonic() - started
    per_minute = instances / elapsed * 60
    return [
        report.Row(
            measure=(
                f"creates per minute, in-memory driver ({instances} instances, "
                f"{CLIENTS} clients, POST to running)"
            ),
            goal=f"hold >= {GOAL_PER_MINUTE} / min",
            measured=(
                f"{per_minute:,.0f} / min running after {elapsed:.1f} s "
                f"({instances / accepted * 60:,.0f} / min accepted)"
            ),
            met=per_minute >= GOAL_PER_MINUTE,
        )
    ]


if __name__ == "__main__":
    report.main(run)
