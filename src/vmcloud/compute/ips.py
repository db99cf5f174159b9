"""Addresses from a region's IP pools, unique among live instances (a partial unique index
on ``instances.ip_address`` enforces it; allocation picks the first free one)."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from vmcloud.compute.models import Instance, IpPool
from vmcloud.core.errors import ServiceUnavailableError


class PoolExhaustedError(ServiceUnavailableError):
    type = "no-addresses"
    title = "No free addresses"


@dataclass(frozen=True)
class Lease:
    address: str
    prefix: int
    gateway: str | None


def allocate(*, db: Session, region_id: uuid.UUID) -> Lease:
    """A free address of the region. Allocations in one region take turns (a transaction lock
    per region), so two creates never pick the same address."""
    db.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('ip-pool:' || :region))"),
        {"region": str(region_id)},
    )
    pools = db.scalars(
        select(IpPool)
        .where(IpPool.region_id == region_id, IpPool.status == "active")
        .order_by(IpPool.name)
    ).all()
    used = {
        str(ip)
        for ip in db.scalars(
            select(Instance.ip_address).where(
                Instance.deleted_at.is_(None), Instance.ip_address.is_not(None)
            )
        )
    }
    for pool in pools:
        network = ipaddress.ip_network(pool.cidr, strict=False)
        taken = used | {str(r) for r in pool.reserved} | ({pool.gateway} if pool.gateway else set())
        for host in network.hosts():
            if str(host) not in taken:
                return Lease(str(host), network.prefixlen, pool.gateway)
    raise PoolExhaustedError("Every address in this region is in use; try another region.")
