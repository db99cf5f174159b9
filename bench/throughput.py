"""Instances created per minute end to end with the in-memory driver: API, database, queue
and workers, without hypervisor time.

Run: .venv/bin/python -m bench.throughput
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bench.harness import platform
from vmcloud.catalog.models import Region
from vmcloud.compute.models import IpPool, Node
from vmcloud.site_settings.models import Setting

INSTANCES = 200
CLIENTS = 8


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
    db.add(IpPool(name="bench", region_id=region.id, cidr="10.128.0.0/16", gateway="10.128.0.1"))
    db.execute(
        update(Setting)
        .where(Setting.key == "compute.max_instances_per_user")
        .values(value=str(INSTANCES))
    )


def main() -> None:
    with platform(prepare, concurrency=8) as p:
        order = {
            "name": "t",
            "product": "nano",
            "region": "local",
            "image": "tiny-linux",
            "billing_cycle": "hourly",
        }

        def create(_: int) -> str:
            response = p.client.post("/api/v1/instances", json=order, headers=p.headers)
            assert response.status_code == 202, response.text
            return str(response.json()["id"])

        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            ids = list(pool.map(create, range(INSTANCES)))
        accepted = time.monotonic() - started
        for instance_id in ids:
            p.wait_for(instance_id, "running", timeout=600)
        elapsed = time.monotonic() - started
    print(
        f"{INSTANCES} instances accepted in {accepted:.1f} s "
        f"({INSTANCES / accepted * 60:.0f}/min), all running after {elapsed:.1f} s "
        f"({INSTANCES / elapsed * 60:.0f} instances/min end to end, {CLIENTS} clients)"
    )


if __name__ == "__main__":
    main()
