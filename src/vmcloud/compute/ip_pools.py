"""Administration of IP pools: list them with their usage, add one, reserve and unreserve
addresses, change the gateway, disable and enable.

Every change locks the pool's row first (``FOR UPDATE``), and an allocation share-locks the
region's active pools for its transaction (``ips.allocate``): a change waits for the orders in
flight and the orders that follow see it, so an address reserved while an order is taking it
is either refused (the order's instance holds it: 409) or never leased.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass

from sqlalchemy import Uuid, cast, select, text, tuple_
from sqlalchemy.dialects.postgresql import CIDR, INET
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.catalog import service as catalog
from vmcloud.catalog.models import Region
from vmcloud.compute import ips
from vmcloud.compute.models import Instance, IpPool
from vmcloud.compute.schemas import IpPoolCreate, IpPoolUpdate
from vmcloud.core.errors import ConflictError, InvalidInputError, NotFoundError
from vmcloud.core.pagination import PageParams, decode_cursor, encode_cursor, paginate
from vmcloud.db.session import flush_or_raise

# Serialises pool creation, so two overlapping networks cannot both pass the overlap check.
_CREATE_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('vmcloud.ip_pools.create'))")

_USAGE = text(
    """
    SELECT count(*) AS used,
           count(*) FILTER (WHERE ip_address = ANY (CAST(:skip AS inet[]))) AS skipped_used
    FROM instances
    WHERE ip_address << CAST(:cidr AS cidr)
      AND deleted_at IS NULL AND ip_address IS NOT NULL
    """
)

_HELD = text(
    """
    SELECT id FROM instances
    WHERE ip_address = CAST(:address AS inet) AND deleted_at IS NULL AND ip_address IS NOT NULL
    LIMIT 1
    """
)

_UNLIST = text(
    "DELETE FROM ip_pool_free_addresses WHERE pool_id = :pool AND address = CAST(:address AS inet)"
)


@dataclass(frozen=True)
class PoolView:
    """A pool with its region's slug and its usage (what ``IpPoolRead`` shows)."""

    pool: IpPool
    region: str
    cidr: str
    hosts: int
    used: int
    free: int

    def __getattr__(self, name: str) -> object:
        return getattr(self.pool, name)


def host_count(network: ips.Network) -> int:
    """How many host addresses ``network`` has (the ones ``ips.host_offsets`` spans)."""
    size = network.num_addresses
    if size <= 2:
        return size
    return size - 2 if network.version == 4 else size - 1


def _is_host(network: ips.Network, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.version != network.version or ip not in network:
        return False
    first, last = ips.host_offsets(network)
    return first <= int(ip) - int(network.network_address) <= last


def _host_skipped(pool: IpPool, network: ips.Network) -> set[str]:
    return {a for a in ips.skipped(pool) if _is_host(network, a)}


def view(*, db: Session, pool: IpPool) -> PoolView:
    network = ipaddress.ip_network(pool.cidr, strict=False)
    skipped = _host_skipped(pool, network)
    row = db.execute(_USAGE, {"cidr": str(network), "skip": sorted(skipped)}).one()
    used, skipped_used = int(row.used), int(row.skipped_used)
    hosts = host_count(network)
    free = max(hosts - used - (len(skipped) - skipped_used), 0)
    region = db.scalar(select(Region.slug).where(Region.id == pool.region_id)) or ""
    return PoolView(pool=pool, region=region, cidr=str(network), hosts=hosts, used=used, free=free)


def list_pools(
    *, db: Session, params: PageParams, region: str | None = None
) -> tuple[list[PoolView], str | None]:
    """Pools by name (optionally one region's, by slug or id), each with its usage."""
    stmt = select(IpPool)
    if region is not None:
        found = catalog.find_active_region(db=db, ref=region)
        if found is None:
            return [], None
        stmt = stmt.where(IpPool.region_id == found.id)
    pools, cursor = paginate(
        db, stmt, order_by=(IpPool.name, IpPool.id), params=params, descending=False
    )
    return [view(db=db, pool=pool) for pool in pools], cursor


def get_pool(*, db: Session, pool_id: uuid.UUID, lock: bool = False) -> IpPool:
    pool = db.get(IpPool, pool_id, with_for_update=lock, populate_existing=lock)
    if pool is None:
        raise NotFoundError("There is no such IP pool.")
    return pool


@dataclass(frozen=True)
class LeaseView:
    address: str
    instance_id: uuid.UUID
    instance_name: str
    status: str | None
    user_id: uuid.UUID
    user_email: str


def list_leases(
    *, db: Session, pool: IpPool, params: PageParams
) -> tuple[list[LeaseView], str | None]:
    """The pool's addresses held by live instances, by address, with their owners."""
    order_by = (Instance.ip_address, Instance.id)
    stmt = select(Instance).where(
        Instance.ip_address.op("<<", is_comparison=True)(cast(str(pool.cidr), CIDR)),
        Instance.deleted_at.is_(None),
        Instance.ip_address.is_not(None),
    )
    if params.cursor:
        address, instance_id = decode_cursor(params.cursor, order_by)
        try:
            after = str(ipaddress.ip_interface(address).ip)
        except ValueError:
            raise InvalidInputError(
                "The cursor is not valid for this list; start again without one.",
                errors=[{"field": "cursor", "message": "invalid cursor"}],
            ) from None
        key = tuple_(Instance.ip_address, Instance.id)
        stmt = stmt.where(key > tuple_(cast(after, INET), cast(instance_id, Uuid())))
    rows = list(db.scalars(stmt.order_by(*order_by).limit(params.limit + 1)))
    instances, cursor = rows[: params.limit], None
    if len(rows) > params.limit:
        cursor = encode_cursor([instances[-1].ip_address, instances[-1].id])
    owners = {
        row.id: row.email
        for row in db.execute(
            select(User.id, User.email).where(User.id.in_({i.user_id for i in instances}))
        )
    }
    leases = [
        LeaseView(
            address=str(i.ip_address).split("/")[0],
            instance_id=i.id,
            instance_name=i.name,
            status=i.status,
            user_id=i.user_id,
            user_email=owners.get(i.user_id, ""),
        )
        for i in instances
    ]
    return leases, cursor


def _invalid(field: str, message: str, detail: str) -> InvalidInputError:
    return InvalidInputError(detail, errors=[{"field": field, "message": message}])


def _check_host(network: ips.Network, address: str, field: str) -> None:
    if not _is_host(network, address):
        raise _invalid(
            field,
            f"not a host address of {network}",
            f"{address} is not an address this pool could hand out ({network}).",
        )


def _check_not_held(db: Session, address: str, field: str) -> None:
    holder = db.scalar(_HELD, {"address": address})
    if holder is not None:
        raise ConflictError(
            f"{address} is held by a live instance ({holder}); delete it or pick another.",
            type="address-in-use",
            title="Address in use",
            errors=[{"field": field, "message": "held by a live instance"}],
        )


def create_pool(*, db: Session, body: IpPoolCreate) -> IpPool:
    region = catalog.find_active_region(db=db, ref=body.region)
    if region is None:
        raise _invalid("region", "no such region", "No such region.")
    network = ipaddress.ip_network(body.cidr)
    if body.gateway is not None:
        _check_host(network, body.gateway, "gateway")
    for address in body.reserved:
        _check_host(network, address, "reserved")
    db.execute(_CREATE_LOCK)
    if db.scalar(select(IpPool.id).where(IpPool.name == body.name)) is not None:
        raise ConflictError(
            "A pool with this name exists.", errors=[{"field": "name", "message": "in use"}]
        )
    overlapping = db.scalar(
        select(IpPool.name)
        .where(IpPool.cidr.op("&&", is_comparison=True)(cast(str(network), CIDR)))
        .limit(1)
    )
    if overlapping is not None:
        raise ConflictError(
            f"{network} overlaps pool {overlapping!r}: an address may belong to one pool only.",
            type="pool-overlap",
            title="Overlapping pool",
            errors=[{"field": "cidr", "message": f"overlaps pool {overlapping}"}],
        )
    reserved = list(dict.fromkeys(body.reserved))
    for address in reserved:
        _check_not_held(db, address, "reserved")
    pool = IpPool(
        name=body.name,
        region_id=region.id,
        cidr=str(network),
        gateway=body.gateway,
        reserved=reserved,
        status=body.status,
    )
    db.add(pool)
    flush_or_raise(
        db,
        ConflictError(
            "A pool with this name exists.", errors=[{"field": "name", "message": "in use"}]
        ),
    )
    return pool


def _same(entry: str, address: str) -> bool:
    try:
        return str(ipaddress.ip_address(str(entry).split("/")[0])) == address
    except ValueError:
        return False


def reserve(*, db: Session, pool_id: uuid.UUID, address: str) -> IpPool:
    """Never lease ``address`` (an address of the pool no live instance holds: else 409).
    Taken off the free list at once; reserving it again changes nothing."""
    pool = get_pool(db=db, pool_id=pool_id, lock=True)
    network = ipaddress.ip_network(pool.cidr, strict=False)
    _check_host(network, address, "address")
    if any(_same(entry, address) for entry in pool.reserved or []):
        return pool
    _check_not_held(db, address, "address")
    db.execute(_UNLIST, {"pool": pool.id, "address": address})
    pool.reserved = [*(pool.reserved or []), address]
    audit.label(pool, "ip_pool.reserve", extra={"address": address})
    db.flush()
    return pool


def unreserve(*, db: Session, pool_id: uuid.UUID, address: str) -> IpPool:
    """Lease ``address`` again (back on the free list unless it is the gateway); unreserving
    an address that is not reserved changes nothing."""
    pool = get_pool(db=db, pool_id=pool_id, lock=True)
    network = ipaddress.ip_network(pool.cidr, strict=False)
    _check_host(network, address, "address")
    kept = [entry for entry in pool.reserved or [] if not _same(entry, address)]
    if len(kept) == len(pool.reserved or []):
        return pool
    pool.reserved = kept
    audit.label(pool, "ip_pool.unreserve", extra={"address": address})
    db.flush()
    if address not in ips.skipped(pool):
        ips.release(db=db, address=address)
    return pool


def update_pool(*, db: Session, pool_id: uuid.UUID, body: IpPoolUpdate) -> IpPool:
    """Enable or disable the pool, or change (or remove, with null) its gateway: a new gateway
    no live instance may hold, taken off the free list; the old one is leased again."""
    pool = get_pool(db=db, pool_id=pool_id, lock=True)
    fields = body.model_fields_set
    if "status" in fields:
        if body.status is None:
            raise _invalid("status", "may not be null", "The status may be left out, not null.")
        if body.status != pool.status:
            pool.status = body.status
            audit.label(pool, "ip_pool.enable" if body.status == "active" else "ip_pool.disable")
    if "gateway" in fields and body.gateway != _canonical(pool.gateway):
        network = ipaddress.ip_network(pool.cidr, strict=False)
        old = _canonical(pool.gateway)
        if body.gateway is not None:
            _check_host(network, body.gateway, "gateway")
            _check_not_held(db, body.gateway, "gateway")
            db.execute(_UNLIST, {"pool": pool.id, "address": body.gateway})
        pool.gateway = body.gateway
        db.flush()
        if old is not None and old not in ips.skipped(pool):
            ips.release(db=db, address=old)
    db.flush()
    return pool


def _canonical(address: str | None) -> str | None:
    return None if address is None else str(ipaddress.ip_address(str(address).split("/")[0]))
