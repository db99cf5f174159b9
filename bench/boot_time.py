"""Seconds from POST /instances to `running` with the tiny image on this machine's libvirt
(median of 10), then to the guest's ready marker on its console.

Run: .venv/bin/python -m bench.boot_time
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path

import libvirt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bench.harness import platform
from vmcloud.catalog.models import Image, Region
from vmcloud.compute import nodes, pools, tiny_image
from vmcloud.compute.models import IpPool, Node

RUNS = 10


def prepare(db: Session, root: Path) -> None:
    built = tiny_image.build(root / "tiny")
    db.execute(
        update(Image)
        .where(Image.slug == "tiny-linux")
        .values(
            boot_json={
                "kind": "kernel",
                "kernel": str(built.kernel),
                "initrd": str(built.initrd),
                "cmdline": built.cmdline,
            }
        )
    )
    region = db.scalar(select(Region).where(Region.slug == "local"))
    assert region is not None
    disks = root / "disks"
    disks.mkdir()
    disks.chmod(0o755)
    db.add(
        Node(
            name="bench",
            region_id=region.id,
            driver="libvirt",
            uri="qemu:///system",
            storage_dir=str(disks),
            vcpus=8,
            memory_mb=16384,
            disk_gb=200,
        )
    )
    db.add(IpPool(name="bench", region_id=region.id, cidr="10.250.0.0/24", gateway="10.250.0.1"))


def main() -> None:
    to_running: list[float] = []
    to_ready: list[float] = []
    with platform(prepare) as p:
        order = {
            "name": "bench",
            "product": "nano",
            "region": "local",
            "image": "tiny-linux",
            "billing_cycle": "hourly",
        }
        node_row = p.session().scalar(select(Node))
        assert node_row is not None
        driver = nodes.driver_for(node_row)
        for _ in range(RUNS):
            started = time.monotonic()
            created = p.client.post("/api/v1/instances", json=order, headers=p.headers).json()
            p.wait_for(created["id"], "running")
            to_running.append(time.monotonic() - started)
            while tiny_image.READY_MARKER not in driver.console_output(uuid.UUID(created["id"])):
                time.sleep(0.05)
            to_ready.append(time.monotonic() - started)
            p.client.delete(f"/api/v1/instances/{created['id']}", headers=p.headers)
            deadline = time.monotonic() + 60
            while (
                p.client.get(f"/api/v1/instances/{created['id']}", headers=p.headers).status_code
                != 404
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
        conn = libvirt.open("qemu:///system")
        try:
            pool = conn.storagePoolLookupByName(pools.pool_name(node_row.storage_dir))
            pool.destroy()
            pool.undefine()
        except libvirt.libvirtError:
            pass
        conn.close()
    print(
        f"POST -> running: median {statistics.median(to_running):.2f} s "
        f"(min {min(to_running):.2f}, max {max(to_running):.2f}, n={RUNS})"
    )
    print(
        f"POST -> guest ready marker: median {statistics.median(to_ready):.2f} s "
        f"(min {min(to_ready):.2f}, max {max(to_ready):.2f})"
    )


if __name__ == "__main__":
    main()
