"""Page 20, ``/admin/ip-pools``: pools by region with their usage, adding one (once per form),
reserving and unreserving, disabling; refusals re-render the form with the service's problem
and change nothing."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.compute.test_ip_pools_api import _occupy
from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_pool
from tests.web.conftest import csrf_of, log_in
from vmcloud.audit.models import AuditLog
from vmcloud.compute.models import IpPool


def _admin(panel: TestClient, db: Session) -> str:
    admin = make_user(db, role="admin")
    log_in(panel, admin.username, PASSWORD)
    return csrf_of(panel.get("/admin/ip-pools").text)


def _pools(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(IpPool)) or 0


def test_pools_are_listed_by_region_with_their_usage(panel: TestClient, db: Session) -> None:
    pool = make_pool(db, "198.18.100.0/29", name="web-a", gateway="198.18.100.1")
    _occupy(db, "198.18.100.2")
    _admin(panel, db)
    html = panel.get("/admin/ip-pools").text
    assert 'id="region-local"' in html
    row = html.split(f'id="pool-{pool.id}"')[1].split("</tr>")[0]
    assert "198.18.100.0/29" in row
    assert '<span class="pool-used">1</span> used · <span class="pool-free">4</span> free' in row
    assert 'hx-sse:connect="/admin/ip-pools/stream"' in html


def test_adding_a_pool_runs_once_per_form(panel: TestClient, db: Session) -> None:
    token = _admin(panel, db)
    before = _pools(db)
    form = {
        "name": "added-pool",
        "region": "local",
        "cidr": "198.18.101.0/28",
        "gateway": "198.18.101.1",
        "reserved": "198.18.101.2\n198.18.101.3",
        "nonce": uuid.uuid4().hex,
        "csrftoken": token,
    }
    first = panel.post("/admin/ip-pools", data=form)
    assert first.status_code == 303, first.text
    again = panel.post("/admin/ip-pools", data=form)
    assert again.status_code == 303
    assert again.headers["location"] == first.headers["location"]
    assert _pools(db) == before + 1
    pool = db.scalar(select(IpPool).where(IpPool.name == "added-pool"))
    assert pool is not None and pool.reserved == ["198.18.101.2", "198.18.101.3"]
    page = panel.get(first.headers["location"])
    assert page.status_code == 200
    assert "198.18.101.2" in page.text and "added-pool" in page.text


def test_a_bad_pool_is_refused_next_to_its_field(panel: TestClient, db: Session) -> None:
    make_pool(db, "198.18.102.0/24", name="wide", gateway="198.18.102.1")
    token = _admin(panel, db)
    before, audit = _pools(db), db.scalar(select(func.count()).select_from(AuditLog))
    base = {"name": "bad", "region": "local", "csrftoken": token}
    not_a_network = panel.post(
        "/admin/ip-pools", data={**base, "cidr": "198.18.103.7/24", "nonce": "n1"}
    )
    assert not_a_network.status_code == 422
    assert 'id="e-cidr"' in not_a_network.text and "CIDR notation" in not_a_network.text
    assert 'value="198.18.103.7/24"' in not_a_network.text  # what was typed stays
    overlap = panel.post(
        "/admin/ip-pools", data={**base, "cidr": "198.18.102.128/25", "nonce": "n2"}
    )
    assert overlap.status_code == 409
    assert "overlaps pool" in overlap.text
    outside = panel.post(
        "/admin/ip-pools",
        data={**base, "cidr": "198.18.104.0/28", "reserved": "10.0.0.1", "nonce": "n3"},
    )
    assert outside.status_code == 422 and 'id="e-reserved"' in outside.text
    assert _pools(db) == before
    assert db.scalar(select(func.count()).select_from(AuditLog)) == audit


def test_reserve_unreserve_and_disable(panel: TestClient, db: Session) -> None:
    pool = make_pool(db, "198.18.105.0/29", name="res", gateway="198.18.105.1")
    holder = _occupy(db, "198.18.105.2")
    token = _admin(panel, db)
    url = f"/admin/ip-pools/{pool.id}"
    page = panel.get(url).text
    assert "198.18.105.2" in page and holder.name in page  # the lease, with its owner
    held = panel.post(f"{url}/reserve", data={"address": "198.18.105.2", "csrftoken": token})
    assert held.status_code == 409
    assert "held by a live instance" in held.text
    bad = panel.post(f"{url}/reserve", data={"address": "nope", "csrftoken": token})
    assert bad.status_code == 422 and 'id="e-address"' in bad.text

    done = panel.post(f"{url}/reserve", data={"address": "198.18.105.4", "csrftoken": token})
    assert done.status_code == 303
    db.refresh(pool)
    assert pool.reserved == ["198.18.105.4"]
    assert "Unreserve" in panel.get(url).text
    freed = panel.post(f"{url}/unreserve", data={"address": "198.18.105.4", "csrftoken": token})
    assert freed.status_code == 303
    db.refresh(pool)
    assert pool.reserved == []

    off = panel.post(f"{url}/status", data={"status": "disabled", "csrftoken": token})
    assert off.status_code == 303
    db.refresh(pool)
    assert pool.status == "disabled"
    assert "Enable pool" in panel.get(url).text
    wrong = panel.post(f"{url}/status", data={"status": "gone", "csrftoken": token})
    assert wrong.status_code == 422


def test_an_unknown_pool_is_404(panel: TestClient, db: Session) -> None:
    token = _admin(panel, db)
    missing = f"/admin/ip-pools/{uuid.uuid4()}"
    assert panel.get(missing).status_code == 404
    answer = panel.post(f"{missing}/reserve", data={"address": "10.0.0.1", "csrftoken": token})
    assert answer.status_code == 404


def test_an_unknown_pool_has_no_stream(panel: TestClient, db: Session) -> None:
    _admin(panel, db)
    assert panel.get(f"/admin/ip-pools/{uuid.uuid4()}/stream").status_code == 404


def test_a_scoped_address_is_refused_next_to_its_field(panel: TestClient, db: Session) -> None:
    token = _admin(panel, db)
    pool = make_pool(db, "2001:db8:9::/64", gateway=None)
    url = f"/admin/ip-pools/{pool.id}"
    for act, field in (("reserve", "address"), ("unreserve", "address"), ("gateway", "gateway")):
        answer = panel.post(f"{url}/{act}", data={field: "2001:db8:9::5%1", "csrftoken": token})
        assert answer.status_code == 422, act
