"""IP pools administered through ``/api/v1/admin/ip-pools`` (and ``compute.ip_pools``): a
reserved address is never leased — reserved while on the free list, written around the
service, or reserved while an order is taking it — an unreserved one comes back, and every bad
input is a clear 4xx that changes nothing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import local_region, make_pool
from tests.helpers import bearer, login
from vmcloud.audit.models import AuditLog
from vmcloud.catalog.models import Product
from vmcloud.compute import ip_pools, ips
from vmcloud.compute.models import Instance, IpPool, IpPoolFreeAddress
from vmcloud.compute.schemas import IpPoolUpdate
from vmcloud.config import Settings
from vmcloud.core.errors import ConflictError
from vmcloud.core.pagination import encode_cursor
from vmcloud.db.session import make_engine, make_session_factory

API = "/api/v1/admin/ip-pools"


def _occupy(db: Session, address: str, owner: uuid.UUID | None = None) -> Instance:
    """A live instance holding ``address`` (written directly, as an order would)."""
    if owner is None:
        owner = db.info.get("owner") or make_user(db).id
        db.info["owner"] = owner
    instance = Instance(
        id=uuid.uuid4(),
        user_id=owner,
        product_id=db.scalar(select(Product.id).limit(1)),
        name=f"vm-{address}",
        ip_address=address,
        status="running",
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


def _listed(db: Session, pool: IpPool) -> set[str]:
    rows = db.scalars(select(IpPoolFreeAddress.address).where(IpPoolFreeAddress.pool_id == pool.id))
    return {str(a).split("/")[0] for a in rows}


# -- the free list -------------------------------------------------------------------------


def test_reserving_a_listed_address_takes_it_off_the_list_and_it_is_never_leased(
    db: Session,
) -> None:
    pool = make_pool(db, "198.18.60.0/28", gateway="198.18.60.1")
    _occupy(db, ips.allocate(db=db, region_id=pool.region_id).address)  # lists .2-.14
    assert "198.18.60.7" in _listed(db, pool)

    ip_pools.reserve(db=db, pool_id=pool.id, address="198.18.60.7")

    assert "198.18.60.7" not in _listed(db, pool)
    leased = _lease_all(db, pool.region_id)
    assert "198.18.60.7" not in leased
    assert leased == [f"198.18.60.{n}" for n in range(3, 15) if n != 7]


def test_an_address_reserved_around_the_service_is_skipped_when_taken(db: Session) -> None:
    # The other path: the list still holds it (a reservation written by hand); the lease
    # skips it and drops it from the list.
    pool = make_pool(db, "198.18.61.0/29", gateway="198.18.61.1")
    _occupy(db, ips.allocate(db=db, region_id=pool.region_id).address)  # lists .2-.6
    pool.reserved = ["198.18.61.3"]
    db.flush()
    assert "198.18.61.3" in _listed(db, pool)
    assert _lease_all(db, pool.region_id) == ["198.18.61.4", "198.18.61.5", "198.18.61.6"]
    assert "198.18.61.3" not in _listed(db, pool)


def test_an_unreserved_address_is_leased_again(db: Session) -> None:
    pool = make_pool(db, "198.18.62.0/29", gateway="198.18.62.1", reserved=[])
    _occupy(db, ips.allocate(db=db, region_id=pool.region_id).address)
    ip_pools.reserve(db=db, pool_id=pool.id, address="198.18.62.4")
    assert _lease_all(db, pool.region_id) == ["198.18.62.3", "198.18.62.5", "198.18.62.6"]

    ip_pools.unreserve(db=db, pool_id=pool.id, address="198.18.62.4")

    assert "198.18.62.4" in _listed(db, pool)  # back on the list, not only after a resync
    assert _lease_all(db, pool.region_id) == ["198.18.62.4"]


def test_a_new_gateway_is_never_leased_and_the_old_one_is(db: Session) -> None:
    pool = make_pool(db, "198.18.63.0/29", gateway="198.18.63.1")
    _occupy(db, ips.allocate(db=db, region_id=pool.region_id).address)  # .2; lists .3-.6
    body = IpPoolUpdate(gateway="198.18.63.5")
    ip_pools.update_pool(db=db, pool_id=pool.id, body=body)
    assert "198.18.63.5" not in _listed(db, pool)
    assert sorted(_lease_all(db, pool.region_id)) == [
        "198.18.63.1",
        "198.18.63.3",
        "198.18.63.4",
        "198.18.63.6",
    ]


# -- reservations racing orders ------------------------------------------------------------


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


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_reserving_an_address_an_order_is_taking_waits_and_is_refused(committed: Session) -> None:
    db = committed
    pool = make_pool(db, "198.18.64.0/29", gateway="198.18.64.1")
    owner = make_user(db).id
    _occupy(db, ips.allocate(db=db, region_id=pool.region_id).address, owner)  # lists .2-.6
    db.commit()
    factory = db.info["factory"]
    with factory() as order:
        order.execute(text("SET lock_timeout = '10s'"))
        lease = ips.allocate(db=order, region_id=pool.region_id)  # .3, not yet committed
        assert lease.address == "198.18.64.3"
        _occupy(order, lease.address, owner)

        def reserve() -> IpPool:
            with factory() as admin:
                admin.execute(text("SET lock_timeout = '10s'"))
                found = ip_pools.reserve(db=admin, pool_id=pool.id, address=lease.address)
                admin.commit()
                return found

        thread, result = _in_thread(reserve)
        time.sleep(0.5)
        assert thread.is_alive()  # waits for the order in flight
        order.commit()
        thread.join(20)
    assert isinstance(result.get("error"), ConflictError), result
    db.expire_all()
    assert db.get(IpPool, pool.id).reserved == []  # type: ignore[union-attr]


def test_an_order_after_a_reservation_in_flight_never_gets_it(committed: Session) -> None:
    db = committed
    pool = make_pool(db, "198.18.65.0/29", gateway="198.18.65.1")
    owner = make_user(db).id
    db.commit()
    factory = db.info["factory"]
    with factory() as admin:
        admin.execute(text("SET lock_timeout = '10s'"))
        # .2 is not listed yet: the order's first refill lists the pool's first chunk.
        ip_pools.reserve(db=admin, pool_id=pool.id, address="198.18.65.2")

        def order() -> str:
            with factory() as session:
                session.execute(text("SET lock_timeout = '10s'"))
                lease = ips.allocate(db=session, region_id=pool.region_id)
                _occupy(session, lease.address, owner)
                session.commit()
                return lease.address

        thread, result = _in_thread(order)
        time.sleep(0.5)
        admin.commit()
        thread.join(20)
    assert result.get("value") == "198.18.65.3", result


# -- the API -------------------------------------------------------------------------------


@pytest.fixture
def admin(client: TestClient, db: Session) -> dict[str, str]:
    user = make_user(db, role="admin")
    return bearer(login(client, user.username, PASSWORD))


def _audit_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(AuditLog)) or 0


def test_create_list_and_show_a_pool(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    body = {
        "name": "edge-v4",
        "region": "local",
        "cidr": "198.18.70.0/28",
        "gateway": "198.18.70.1",
        "reserved": ["198.18.70.2", "198.18.70.3"],
    }
    created = client.post(API, json=body, headers=admin)
    assert created.status_code == 201, created.text
    pool = created.json()
    assert pool["region"] == "local"
    assert (pool["hosts"], pool["used"], pool["free"]) == (14, 0, 11)
    _occupy(db, "198.18.70.9")

    listed = client.get(API, headers=admin, params={"region": "local"})
    assert listed.status_code == 200
    mine = next(p for p in listed.json()["items"] if p["name"] == "edge-v4")
    assert (mine["used"], mine["free"]) == (1, 10)

    shown = client.get(f"{API}/{pool['id']}", headers=admin)
    assert shown.status_code == 200
    assert [lease["address"] for lease in shown.json()["leases"]] == ["198.18.70.9"]
    lease = shown.json()["leases"][0]
    assert lease["instance_name"] == "vm-198.18.70.9"
    assert lease["user_email"]
    audit = db.scalar(
        select(AuditLog).where(
            AuditLog.entity_type == "ip_pool", AuditLog.action == "ip_pool.create"
        )
    )
    assert audit is not None


def test_leases_are_paged_by_address(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    pool = make_pool(db, "198.18.71.0/28", gateway="198.18.71.1")
    for n in (12, 3, 10, 4):
        _occupy(db, f"198.18.71.{n}")
    first = client.get(f"{API}/{pool.id}", headers=admin, params={"limit": 3}).json()
    assert [x["address"] for x in first["leases"]] == ["198.18.71.3", "198.18.71.4", "198.18.71.10"]
    rest = client.get(
        f"{API}/{pool.id}",
        headers=admin,
        params={"limit": 3, "cursor": first["leases_next_cursor"]},
    ).json()
    assert [x["address"] for x in rest["leases"]] == ["198.18.71.12"]
    assert rest["leases_next_cursor"] is None
    forged = encode_cursor(["not an address", str(uuid.uuid4())])
    refused = client.get(f"{API}/{pool.id}", headers=admin, params={"cursor": forged})
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "cursor", "message": "invalid cursor"}]


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"cidr": "198.18.72.5/28"}, 422, "cidr"),  # host bits set: not a network
        ({"cidr": "not-a-network"}, 422, "cidr"),
        ({"gateway": "198.18.99.1"}, 422, "gateway"),
        ({"gateway": "198.18.72.0"}, 422, "gateway"),  # the network address
        ({"reserved": ["198.18.72.15"]}, 422, "reserved"),  # the broadcast address
        ({"reserved": ["10.0.0.1"]}, 422, "reserved"),
        ({"region": "atlantis"}, 422, "region"),
        ({"cidr": "198.18.73.0/24"}, 409, "cidr"),  # overlaps the existing pool
        ({"cidr": "198.18.73.32/27"}, 409, "cidr"),  # inside it
        ({"name": "taken"}, 409, "name"),
    ],
)
def test_bad_pools_are_refused_and_change_nothing(
    client: TestClient,
    db: Session,
    admin: dict[str, str],
    change: dict[str, Any],
    status: int,
    field: str,
) -> None:
    make_pool(db, "198.18.73.0/26", name="taken", gateway="198.18.73.1")
    body = {"name": "new-pool", "region": "local", "cidr": "198.18.72.0/28", **change}
    pools_before, audit_before = (
        db.scalar(select(func.count()).select_from(IpPool)),
        _audit_count(db),
    )
    answer = client.post(API, json=body, headers=admin)
    assert answer.status_code == status, answer.text
    assert field in {e["field"] for e in answer.json()["errors"]}
    assert db.scalar(select(func.count()).select_from(IpPool)) == pools_before
    assert _audit_count(db) == audit_before


def test_reserve_and_unreserve_through_the_api(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    pool = make_pool(db, "198.18.74.0/29", gateway="198.18.74.1")
    _occupy(db, "198.18.74.2")
    url = f"{API}/{pool.id}"

    held = client.post(f"{url}/reserve", json={"address": "198.18.74.2"}, headers=admin)
    assert held.status_code == 409, held.text
    assert held.json()["type"] == "/problems/address-in-use"
    outside = client.post(f"{url}/reserve", json={"address": "198.18.75.2"}, headers=admin)
    assert outside.status_code == 422
    assert client.post(f"{url}/reserve", json={"address": "nope"}, headers=admin).status_code == 422

    reserved = client.post(f"{url}/reserve", json={"address": "198.18.74.5"}, headers=admin)
    assert reserved.status_code == 200, reserved.text
    assert reserved.json()["reserved"] == ["198.18.74.5"]
    assert (reserved.json()["used"], reserved.json()["free"]) == (1, 3)
    audit = db.scalar(select(AuditLog).where(AuditLog.action == "ip_pool.reserve"))
    assert audit is not None and audit.new_values == {"reserved": ["198.18.74.5"]}
    again = client.post(f"{url}/reserve", json={"address": "198.18.74.5"}, headers=admin)
    assert again.json()["reserved"] == ["198.18.74.5"]
    assert sorted(_lease_all(db, pool.region_id)) == ["198.18.74.3", "198.18.74.4", "198.18.74.6"]

    freed = client.post(f"{url}/unreserve", json={"address": "198.18.74.5"}, headers=admin)
    assert freed.status_code == 200
    assert freed.json()["reserved"] == []
    assert _lease_all(db, pool.region_id) == ["198.18.74.5"]


def test_disable_and_change_the_gateway(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    pool = make_pool(db, "198.18.76.0/29", gateway="198.18.76.1")
    url = f"{API}/{pool.id}"
    disabled = client.patch(url, json={"status": "disabled"}, headers=admin)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["status"] == "disabled"
    with pytest.raises(ips.PoolExhaustedError):
        ips.allocate(db=db, region_id=local_region(db).id)
    assert db.scalar(select(AuditLog).where(AuditLog.action == "ip_pool.disable")) is not None

    _occupy(db, "198.18.76.3")
    taken = client.patch(url, json={"gateway": "198.18.76.3"}, headers=admin)
    assert taken.status_code == 409
    assert client.patch(url, json={"gateway": "198.18.77.1"}, headers=admin).status_code == 422
    assert client.patch(url, json={"status": None}, headers=admin).status_code == 422
    none = client.patch(url, json={"gateway": None, "status": "active"}, headers=admin)
    assert none.status_code == 200
    assert (none.json()["gateway"], none.json()["status"]) == (None, "active")


def test_an_unknown_pool_is_404(client: TestClient, admin: dict[str, str]) -> None:
    missing = f"{API}/{uuid.uuid4()}"
    assert client.get(missing, headers=admin).status_code == 404
    assert client.patch(missing, json={"status": "active"}, headers=admin).status_code == 404
    answer = client.post(f"{missing}/reserve", json={"address": "10.0.0.1"}, headers=admin)
    assert answer.status_code == 404


def test_scoped_ipv6_addresses_are_422(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    pool = make_pool(db, "2001:db8:9::/64", gateway=None)
    url = f"{API}/{pool.id}"
    for scoped in ("2001:db8:9::5%1", "2001:db8:9::5%eth0"):
        reserve = client.post(f"{url}/reserve", json={"address": scoped}, headers=admin)
        assert reserve.status_code == 422, reserve.text
        assert client.patch(url, json={"gateway": scoped}, headers=admin).status_code == 422
    body = {"name": "scoped", "region": "local", "cidr": "2001:db8:7::/64"}
    for change in ({"gateway": "2001:db8:7::1%2"}, {"cidr": "2001:db8:6::%2/64"}):
        assert client.post(API, json={**body, **change}, headers=admin).status_code == 422
    assert db.scalar(select(func.count()).select_from(IpPool)) == 1
