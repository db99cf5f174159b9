"""IP allocation from a pool's free list: network, broadcast, gateway and reserved addresses
are never leased, released addresses come back, concurrent orders never share an address, an
exhausted region is the same clear error, and the list refills across chunks."""

from __future__ import annotations

import ipaddress
import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from tests.factories.accounts import make_user
from tests.factories.compute import local_region, make_pool
from vmcloud.catalog.models import Product
from vmcloud.compute import ips
from vmcloud.compute.models import Instance, IpPool, IpPoolFreeAddress
from vmcloud.compute.reconcile import finish_deletion
from vmcloud.config import Settings
from vmcloud.db.session import make_engine, make_session_factory


def _occupy(db: Session, address: str, *, status: str = "running") -> Instance:
    """A live instance holding ``address`` (written directly, as an order would)."""
    product_id = db.scalar(select(Product.id).limit(1))
    owner = db.info.get("owner")
    if owner is None:
        owner = db.info["owner"] = make_user(db).id
    instance = Instance(
        id=uuid.uuid4(),
        user_id=owner,
        product_id=product_id,
        name="vm",
        ip_address=address,
        status=status,
    )
    db.add(instance)
    db.flush()
    return instance


def _lease_all(db: Session, region_id: uuid.UUID) -> list[str]:
    leased = []
    while True:
        try:
            lease = ips.allocate(db=db, region_id=region_id)
        except ips.PoolExhaustedError:
            return leased
        _occupy(db, lease.address)
        leased.append(lease.address)


@pytest.mark.parametrize(
    "cidr", ["10.9.0.0/29", "10.9.0.0/30", "10.9.0.0/31", "10.9.0.7/32", "fd00:9::/125"]
)
def test_host_offsets_match_the_hosts_of_the_network(cidr: str) -> None:
    network = ipaddress.ip_network(cidr)
    first, last = ips.host_offsets(network)
    hosts = [int(h) - int(network.network_address) for h in network.hosts()]
    assert (first, last) == (hosts[0], hosts[-1])


def test_network_broadcast_gateway_and_reserved_are_never_leased(db: Session) -> None:
    pool = make_pool(db, "198.18.40.0/28", gateway="198.18.40.1", reserved=["198.18.40.5"])
    leased = _lease_all(db, pool.region_id)
    expected = [f"198.18.40.{n}" for n in range(2, 15) if n != 5]
    assert leased == expected  # lowest first, every host but the gateway and the reserved one
    with pytest.raises(ips.PoolExhaustedError) as raised:
        ips.allocate(db=db, region_id=pool.region_id)
    assert raised.value.type == "no-addresses"
    assert raised.value.status == 503
    assert "Every address in this region is in use" in raised.value.detail


def test_the_list_refills_chunk_by_chunk(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ips, "CHUNK", 3)
    pool = make_pool(db, "198.18.41.0/27", gateway="198.18.41.1")
    _occupy(db, "198.18.41.3")  # in use before the pool's list reached it
    _occupy(db, "198.18.41.4")
    leased = _lease_all(db, pool.region_id)
    assert leased == [f"198.18.41.{n}" for n in range(2, 31) if n not in (3, 4)]
    # Never more listed than one chunk ahead of what was handed out.
    assert db.scalar(select(func.count()).select_from(IpPoolFreeAddress)) == 0


def test_a_deleted_instance_gives_its_address_back(db: Session) -> None:
    pool = make_pool(db, "198.18.42.0/29", gateway="198.18.42.1")
    leased = _lease_all(db, pool.region_id)
    assert leased == [f"198.18.42.{n}" for n in range(2, 7)]
    victim = db.scalar(select(Instance).where(Instance.ip_address == "198.18.42.4"))
    assert victim is not None
    victim.status = "deleting"
    db.flush()
    finish_deletion(db, victim.id)
    db.flush()
    lease = ips.allocate(db=db, region_id=pool.region_id)
    assert lease.address == "198.18.42.4"
    assert (lease.prefix, lease.gateway) == (29, "198.18.42.1")
    _occupy(db, lease.address)
    with pytest.raises(ips.PoolExhaustedError):
        ips.allocate(db=db, region_id=pool.region_id)


def test_a_full_looking_pool_lists_again_what_was_freed_around_the_list(db: Session) -> None:
    pool = make_pool(db, "198.18.44.0/29", gateway="198.18.44.1", reserved=["198.18.44.6"])
    leased = _lease_all(db, pool.region_id)
    assert leased == [f"198.18.44.{n}" for n in range(2, 6)]
    # Freed without finish_deletion (a row removed by hand) and an address unreserved: neither
    # is on the free list, yet neither may be lost.
    db.execute(delete(Instance).where(Instance.ip_address == "198.18.44.3"))
    pool.reserved = []
    db.flush()
    again = _lease_all(db, pool.region_id)
    assert sorted(again) == ["198.18.44.3", "198.18.44.6"]


def test_an_address_taken_around_the_list_is_skipped(db: Session) -> None:
    pool = make_pool(db, "198.18.43.0/29", gateway="198.18.43.1")
    first = ips.allocate(db=db, region_id=pool.region_id)  # lists .2-.6, takes .2
    _occupy(db, first.address)
    _occupy(db, "198.18.43.3")  # an import, not an order: .3 is still on the list
    assert ips.allocate(db=db, region_id=pool.region_id).address == "198.18.43.4"


def test_pools_are_used_in_name_order_and_disabled_ones_never(db: Session) -> None:
    region = local_region(db)
    make_pool(db, "198.18.44.0/30", name="a-pool", gateway="198.18.44.1")
    make_pool(db, "198.18.45.0/30", name="b-pool", gateway="198.18.45.1")
    make_pool(db, "198.18.46.0/30", name="0-off", gateway="198.18.46.1", status="disabled")
    assert _lease_all(db, region.id) == ["198.18.44.2", "198.18.45.2"]


def test_a_gateway_changed_after_listing_is_not_leased(db: Session) -> None:
    pool = make_pool(db, "198.18.47.0/29", gateway="198.18.47.1")
    _occupy(db, ips.allocate(db=db, region_id=pool.region_id).address)  # lists .2-.6
    pool.gateway = "198.18.47.3"
    pool.reserved = ["198.18.47.4"]
    db.flush()
    # .3 and .4 are skipped; .1, no longer the gateway, is a host address again (listed when
    # the list looks empty).
    assert _lease_all(db, pool.region_id) == ["198.18.47.5", "198.18.47.6", "198.18.47.1"]


def test_ipv6_pools_list_only_what_they_hand_out(db: Session) -> None:
    pool = make_pool(db, "fd00:47::/64", gateway="fd00:47::1")
    assert ips.allocate(db=db, region_id=pool.region_id).address == "fd00:47::2"
    listed = db.scalar(select(func.count()).select_from(IpPoolFreeAddress))
    assert listed is not None and listed < ips.CHUNK


def test_resync_lists_the_holes_below_the_highest_used_address(db: Session) -> None:
    pool = make_pool(db, "198.18.48.0/24", gateway="198.18.48.1")
    for n in (2, 3, 5, 9):
        _occupy(db, f"198.18.48.{n}")
    assert ips.resync(db=db, pool=pool) == 4  # .4, .6, .7, .8
    assert _lease_n(db, pool, 6) == [f"198.18.48.{n}" for n in (4, 6, 7, 8, 10, 11)]


def _lease_n(db: Session, pool: IpPool, n: int) -> list[str]:
    leased = []
    for _ in range(n):
        lease = ips.allocate(db=db, region_id=pool.region_id)
        _occupy(db, lease.address)
        leased.append(lease.address)
    return leased


@pytest.fixture
def committed(settings: Settings, fresh_database_url: str) -> Iterator[Session]:
    engine = make_engine(settings, fresh_database_url)
    factory = make_session_factory(engine)
    try:
        with factory() as db:
            db.info["factory"] = factory
            yield db
    finally:
        engine.dispose()


def test_concurrent_allocations_take_different_addresses_without_waiting(
    committed: Session,
) -> None:
    db = committed
    pool = make_pool(db, "198.18.49.0/29", gateway="198.18.49.1")
    _occupy(db, ips.allocate(db=db, region_id=pool.region_id).address)  # .2; lists .3-.6
    db.commit()
    factory = db.info["factory"]
    with factory() as first, factory() as second:
        # One transaction holds its lease open; the other is not blocked and takes the next.
        first.execute(text("SET lock_timeout = '5s'"))
        second.execute(text("SET lock_timeout = '5s'"))
        a = ips.allocate(db=first, region_id=pool.region_id)
        b = ips.allocate(db=second, region_id=pool.region_id)
        assert (a.address, b.address) == ("198.18.49.3", "198.18.49.4")
        first.rollback()  # an order that failed: its address is free again
        second.commit()
        c = ips.allocate(db=first, region_id=pool.region_id)
        assert c.address == "198.18.49.3"
        first.rollback()


def test_many_concurrent_allocations_never_share_an_address(committed: Session) -> None:
    db = committed
    pool = make_pool(db, "198.18.50.0/27", gateway="198.18.50.1")
    owner = make_user(db).id
    db.commit()
    factory = db.info["factory"]
    leased: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(12)

    def order() -> None:
        try:
            with factory() as session:
                session.info["owner"] = owner
                barrier.wait(30)
                lease = ips.allocate(db=session, region_id=pool.region_id)
                _occupy(session, lease.address)  # the unique index would refuse a duplicate
                session.commit()
                leased.append(lease.address)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=order) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(leased) == len(set(leased)) == 12
    assert sorted(leased, key=ipaddress.ip_address) == [f"198.18.50.{n}" for n in range(2, 14)]
