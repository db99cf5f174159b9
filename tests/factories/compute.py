"""Compute objects for tests: nodes (fake-driver by default), IP pools, instances."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vmcloud.catalog.models import Image, Region
from vmcloud.compute.models import Instance, InstanceMetric, IpPool, Node
from vmcloud.compute.tiny_image import TinyImage

_counter = itertools.count(1)


def local_region(db: Session) -> Region:
    region = db.scalar(select(Region).where(Region.slug == "local"))
    assert region is not None
    return region


def make_node(db: Session, *, variant: str = "", **overrides: Any) -> Node:
    """A node (the in-memory fake driver unless overridden); ``variant`` picks one of the fake's
    failure modes (``drivers.fake.VARIANTS``: fails-on-create, dies-while-booting, …)."""
    n = next(_counter)
    query = f"?variant={variant}" if variant else ""
    values: dict[str, Any] = {
        "name": f"node-{n}-{uuid.uuid4().hex[:6]}",
        "region_id": local_region(db).id,
        "driver": "fake",
        "uri": f"fake://node-{n}-{uuid.uuid4().hex[:6]}{query}",
        "storage_dir": "/var/lib/vmcloud/disks",
        "vcpus": 8,
        "memory_mb": 16384,
        "disk_gb": 500,
        "status": "enabled",
    }
    values.update(overrides)
    node = Node(**values)
    db.add(node)
    db.flush()
    return node


def make_pool(db: Session, cidr: str = "198.18.0.0/24", **overrides: Any) -> IpPool:
    n = next(_counter)
    values: dict[str, Any] = {
        "name": f"pool-{n}-{uuid.uuid4().hex[:6]}",
        "region_id": local_region(db).id,
        "cidr": cidr,
        "gateway": str(cidr.rsplit(".", 1)[0]) + ".1",
        "reserved": [],
    }
    values.update(overrides)
    pool = IpPool(**values)
    db.add(pool)
    db.flush()
    return pool


def boot_tiny_image(db: Session, tiny: TinyImage) -> None:
    """Point the seeded ``tiny-linux`` image at the tiny guest built for this run."""
    db.execute(
        update(Image)
        .where(Image.slug == "tiny-linux")
        .values(
            boot_json={
                "kind": "kernel",
                "kernel": str(tiny.kernel),
                "initrd": str(tiny.initrd),
                "cmdline": tiny.cmdline,
            }
        )
    )


def add_sample(
    db: Session, instance: Instance, at: datetime, counter: int, *, cpu: float = 10.0
) -> None:
    """A usage sample whose byte counters read ``counter`` (disk read), twice, three and four
    times that (disk write, network in and out), with ``counter`` ns of CPU time."""
    db.add(
        InstanceMetric(
            instance_id=instance.id,
            collected_at=at,
            cpu_percent=cpu,
            memory_used_mb=100,
            disk_read_bytes=counter,
            disk_write_bytes=counter * 2,
            net_rx_bytes=counter * 3,
            net_tx_bytes=counter * 4,
            cpu_time_ns=counter,
        )
    )
    db.flush()
