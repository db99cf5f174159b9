"""Addresses from a region's IP pools, unique among live instances.

Each pool keeps a free list (``ip_pool_free_addresses``): allocation deletes its first row
with ``FOR UPDATE SKIP LOCKED``, so it reads one index entry however many addresses are in use,
and two concurrent orders take different rows without waiting for each other (a transaction
that rolls back puts its row back). The list is filled a chunk of :data:`CHUNK` host addresses
at a time, in address order, as allocations reach its end (``ip_pool_cursors`` says how far);
listing a chunk skips the network, broadcast, gateway and reserved addresses and every address
a live instance holds. A deleted instance's address goes back on the list (:func:`release`),
and a pool that looks full is listed again from the instances first (:func:`resync`), so an
address freed around the list (a row removed by hand) is never lost. Reserving an address
(``ip_pools.reserve``) takes it off the list, unreserving puts it back; an address reserved
around that is skipped when taken.

The partial unique index on ``instances.ip_address`` stays the last guard: an address taken
from the list is checked against live instances (a row written around the list, e.g. by an
import, is skipped and dropped) and the insert of the instance would fail on a duplicate.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from vmcloud.compute.models import IpPool
from vmcloud.core.errors import ServiceUnavailableError

# Addresses listed per refill: a refill costs about this many index probes, once per CHUNK
# allocations.
CHUNK = 1024
# Offsets are BIGINT: an IPv6 pool lists at most its first 2^62 addresses.
_MAX_OFFSET = 2**62

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PoolExhaustedError(ServiceUnavailableError):
    type = "no-addresses"
    title = "No free addresses"


@dataclass(frozen=True)
class Lease:
    address: str
    prefix: int
    gateway: str | None


def host_offsets(network: Network) -> tuple[int, int]:
    """The first and last offsets (from the network address) of ``network.hosts()``: no
    network or broadcast address in IPv4 (except /31 and /32), no subnet-router anycast in
    IPv6 (except /127 and /128)."""
    size = network.num_addresses
    if size <= 2:
        return 0, size - 1
    last = size - 2 if network.version == 4 else size - 1
    return 1, min(last, _MAX_OFFSET)


_TAKE = text(
    """
    DELETE FROM ip_pool_free_addresses
    WHERE pool_id = :pool AND address = (
        SELECT address FROM ip_pool_free_addresses
        WHERE pool_id = :pool
        ORDER BY address
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING host(address)
    """
)

_IN_USE = text(
    """
    SELECT EXISTS (
        SELECT FROM instances
        WHERE ip_address = CAST(:address AS inet)
          AND deleted_at IS NULL AND ip_address IS NOT NULL
    )
    """
)

_CURSOR = text(
    """
    INSERT INTO ip_pool_cursors (pool_id, filled_to) VALUES (:pool, :start)
    ON CONFLICT (pool_id) DO NOTHING
    """
)

_LOCK_CURSOR = text("SELECT filled_to FROM ip_pool_cursors WHERE pool_id = :pool FOR UPDATE")

# Host addresses base + start .. base + stop that are not skipped and that no live instance
# holds (each checked through the partial unique index on instances.ip_address).
_LIST = text(
    """
    INSERT INTO ip_pool_free_addresses (pool_id, address)
    SELECT :pool, candidate.address
    FROM (
        SELECT CAST(:base AS inet) + n AS address
        FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS n
    ) AS candidate
    WHERE candidate.address <> ALL (CAST(:skip AS inet[]))
      AND NOT EXISTS (
        SELECT FROM instances
        WHERE instances.ip_address = candidate.address
          AND instances.deleted_at IS NULL AND instances.ip_address IS NOT NULL
      )
    ON CONFLICT DO NOTHING
    """
)

_SET_CURSOR = text("UPDATE ip_pool_cursors SET filled_to = :filled_to WHERE pool_id = :pool")


def allocate(*, db: Session, region_id: uuid.UUID) -> Lease:
    """A free address of the region: the lowest free one of its first active pool (by name)
    that has any. The lease holds until the transaction ends (rolled back, it is free again).

    The region's active pools are share-locked until then (concurrent orders do not wait for
    each other): a change to a pool (``ip_pools.reserve``, a new gateway) waits for the orders
    in flight, and an order waits for a change in flight and then reads the pool as changed,
    so an address is never both reserved and leased."""
    pools = db.scalars(
        select(IpPool)
        .where(IpPool.region_id == region_id, IpPool.status == "active")
        .order_by(IpPool.name)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    ).all()
    for pool in pools:
        lease = _lease_from(db, pool)
        if lease is None and resync(db=db, pool=pool):
            # Listed to its end and empty: before calling the pool full, list again what no
            # live instance holds (an address freed around the list, an unreserved one).
            lease = _lease_from(db, pool)
        if lease is not None:
            return lease
    raise PoolExhaustedError("Every address in this region is in use; try another region.")


def skipped(pool: IpPool) -> set[str]:
    """The pool's gateway and reserved addresses (entries that are no address are ignored)."""
    found = set()
    for entry in [*(pool.reserved or []), *([pool.gateway] if pool.gateway else [])]:
        try:
            found.add(str(ipaddress.ip_address(str(entry).split("/")[0])))
        except ValueError:
            continue
    return found


def _lease_from(db: Session, pool: IpPool) -> Lease | None:
    network = ipaddress.ip_network(pool.cidr, strict=False)
    skip = skipped(pool)
    while True:
        address = db.scalar(_TAKE, {"pool": pool.id})
        if address is None:
            # The list looks empty: take the pool's cursor (waiting for a refill in flight to
            # commit), look again, and list the next chunk when there is still nothing.
            address = _refill(db, pool, network, skip)
            if address is None:
                return None
        if address in skip or db.scalar(_IN_USE, {"address": address}):
            continue  # listed before the pool or an instance changed: it stays off the list
        return Lease(address, network.prefixlen, pool.gateway)


def _refill(db: Session, pool: IpPool, network: Network, skipped: set[str]) -> str | None:
    first, last = host_offsets(network)
    db.execute(_CURSOR, {"pool": pool.id, "start": first - 1})
    while True:
        filled_to = int(db.scalar(_LOCK_CURSOR, {"pool": pool.id}))
        address: str | None = db.scalar(_TAKE, {"pool": pool.id})
        if address is not None or filled_to >= last:
            return address
        stop = min(filled_to + CHUNK, last)
        db.execute(
            _LIST,
            {
                "pool": pool.id,
                "base": str(network.network_address),
                "start": filled_to + 1,
                "stop": stop,
                "skip": sorted(skipped),
            },
        )
        db.execute(_SET_CURSOR, {"pool": pool.id, "filled_to": stop})


_RELEASE = text(
    """
    INSERT INTO ip_pool_free_addresses (pool_id, address)
    SELECT p.id, CAST(:address AS inet)
    FROM ip_pools AS p
    JOIN ip_pool_cursors AS c ON c.pool_id = p.id
    WHERE CAST(:address AS inet) << p.cidr
      AND CAST(:address AS inet) - CAST(host(p.cidr) AS inet) <= c.filled_to
    ON CONFLICT DO NOTHING
    """
)


def release(*, db: Session, address: str | None) -> None:
    """Put an address no live instance holds any more back on its pool's free list (a pool
    whose list has not reached it yet will list it in its turn)."""
    if address is not None:
        db.execute(_RELEASE, {"address": str(address).split("/")[0]})


_HIGHEST_USED = text(
    """
    SELECT host(max(ip_address)) FROM instances
    WHERE deleted_at IS NULL AND ip_address IS NOT NULL
      AND ip_address >= CAST(:low AS inet) AND ip_address <= CAST(:high AS inet)
    """
)


def resync(*, db: Session, pool: IpPool) -> int:
    """Rebuild a pool's free list from the instances (after addresses were written around it,
    e.g. an import): every free host address up to the highest one in use is listed; the rest
    is listed by allocations as usual. Reads the pool's used addresses once; returns how many
    addresses were listed."""
    network = ipaddress.ip_network(pool.cidr, strict=False)
    first, last = host_offsets(network)
    db.execute(_CURSOR, {"pool": pool.id, "start": first - 1})
    db.execute(_LOCK_CURSOR, {"pool": pool.id})
    db.execute(text("DELETE FROM ip_pool_free_addresses WHERE pool_id = :pool"), {"pool": pool.id})
    highest = db.scalar(
        _HIGHEST_USED,
        {"low": str(network.network_address + first), "high": str(network.network_address + last)},
    )
    top = first - 1 if highest is None else int(ipaddress.ip_address(highest)) - int(network[0])
    listed = 0
    if top >= first:
        result = db.execute(
            _LIST,
            {
                "pool": pool.id,
                "base": str(network.network_address),
                "start": first,
                "stop": top,
                "skip": sorted(skipped(pool)),
            },
        )
        listed = int(result.rowcount or 0)  # type: ignore[attr-defined]
    db.execute(_SET_CURSOR, {"pool": pool.id, "filled_to": top})
    return listed
