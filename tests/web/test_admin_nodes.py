"""``/admin/nodes`` (admins only): the fleet with health and allocation; adding a node (its URI
checked by the node service, as the API's), editing it, and enabling or disabling it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node
from tests.helpers import bearer, login
from tests.web.conftest import csrf_of, log_in
from tests.web.test_admin_instances import stopped_instance
from vmcloud.audit.models import AuditLog
from vmcloud.compute import nodes, reconcile
from vmcloud.compute.drivers.fake import FakeDriver
from vmcloud.compute.models import Node
from vmcloud.web.admin.nodes import EDIT_FIELDS

FORM = {
    "name": "hv-panel-1",
    "region": "local",
    "uri": "qemu+ssh://root@hv-panel-1/system",
    "driver": "libvirt",
    "storage_dir": "/var/lib/vmcloud/disks",
    "network_mode": "user",
    "bridge": "",
    "virt_type": "kvm",
    "vcpus": "32",
    "memory_mb": "131072",
    "disk_gb": "2000",
    "cpu_overcommit": "4.0",
    "ram_overcommit": "1.0",
    "disk_overcommit": "1.0",
    "status": "enabled",
}


def _admin(panel: TestClient, db: Session) -> str:
    admin = make_user(db, role="admin")
    log_in(panel, admin.username, PASSWORD)
    return csrf_of(panel.get("/admin/nodes/new").text)


def _count(db: Session, name: str) -> int:
    return db.scalar(select(func.count()).select_from(Node).where(Node.name == name)) or 0


def test_an_admin_adds_a_node_once_per_form(panel: TestClient, db: Session) -> None:
    token = _admin(panel, db)
    form = {**FORM, "nonce": "add-node-once", "csrftoken": token}
    added = panel.post("/admin/nodes/new", data=form)
    assert added.status_code == 303
    assert added.headers["location"] == "/admin/nodes"
    node = db.scalars(select(Node).where(Node.name == "hv-panel-1")).one()
    assert (node.uri, node.virt_type, node.vcpus, node.status) == (
        FORM["uri"], "kvm", 32, "enabled",
    )  # fmt: skip
    assert db.scalar(select(AuditLog.action).where(AuditLog.entity_id == node.id)) == "node.create"

    assert panel.post("/admin/nodes/new", data=form).status_code == 303  # a double submit
    assert _count(db, "hv-panel-1") == 1
    listed = panel.get("/admin/nodes").text
    assert "hv-panel-1" in listed and FORM["uri"] in listed


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"uri": "http://hv-1/system"}, "uri"),
        ({"uri": "qemu+ssh:///system"}, "uri"),  # a remote transport with no host
        ({"uri": "qemu+unix://hv-1/system"}, "uri"),  # a local socket on another host
        ({"uri": "qemu:///root"}, "uri"),
        ({"uri": "qemu:///system?socket=/tmp/a\x01b"}, "uri"),
        ({"uri": "qemu:///system?socket=/tmp/a b"}, "uri"),
        ({"uri": "qemu+tcp://[::1/system"}, "uri"),
        ({"vcpus": "many"}, "vcpus"),
        ({"name": "Not A Name"}, "name"),
        ({"region": "atlantis"}, "region"),
        ({"driver": "fake"}, "driver"),  # the in-memory driver: not on this installation
    ],
)
def test_a_refused_node_shows_the_field_and_adds_nothing(
    panel: TestClient, db: Session, changes: dict[str, str], field: str
) -> None:
    token = _admin(panel, db)
    form = {**FORM, **changes, "nonce": f"refused-{field}", "csrftoken": token}
    answer = panel.post("/admin/nodes/new", data=form)
    assert answer.status_code == 422, answer.text[:500]
    assert f'id="e-{field}"' in answer.text
    assert _count(db, "hv-panel-1") == 0


def test_the_api_checks_the_uri_too(client: TestClient, db: Session) -> None:
    admin = make_user(db, role="admin")
    body = {k: v for k, v in FORM.items() if v} | {"vcpus": 8, "memory_mb": 8192, "disk_gb": 50}
    answer = client.post(
        "/api/v1/admin/nodes",
        json={**body, "uri": "qemu+ssh:///system"},
        headers=bearer(login(client, admin.username, PASSWORD)),
    )
    assert answer.status_code == 422
    assert answer.json()["errors"] == [{"field": "uri", "message": "qemu+ssh:// needs a host"}]


@pytest.mark.parametrize(
    "uri",
    [
        "qemu:///system",
        "qemu:///session",
        "qemu+unix:///session?socket=/home/node2/run/libvirt/libvirt-sock",
        "qemu+ssh://root@hv-01/system",
        "qemu+tls://hv-01.example.com:16514/system",
        "qemu://hv-01/system",  # libvirt's default transport to a host: tls
        "qemu+libssh2://admin@10.0.0.5/system?known_hosts=/etc/ssh/known",
    ],
)
def test_uris_the_driver_can_use_are_accepted(uri: str) -> None:
    assert nodes.uri_problem("libvirt", uri) is None


def test_an_admin_disables_and_edits_a_node(panel: TestClient, db: Session) -> None:
    node = make_node(db)
    token = _admin(panel, db)
    disabled = panel.post(
        f"/admin/nodes/{node.id}/status", data={"status": "disabled", "csrftoken": token}
    )
    assert disabled.status_code == 303
    db.refresh(node)
    assert node.status == "disabled"
    refused = panel.post(
        f"/admin/nodes/{node.id}/status", data={"status": "melted", "csrftoken": token}
    )
    assert refused.status_code == 422
    db.refresh(node)
    assert node.status == "disabled"

    edit = panel.get(f"/admin/nodes/{node.id}")
    assert edit.status_code == 200 and 'name="vcpus" type="number" value="8"' in edit.text
    form = {**{k: FORM[k] for k in EDIT_FIELDS}, "vcpus": "12", "csrftoken": token}
    assert panel.post(f"/admin/nodes/{node.id}", data=form).status_code == 303
    db.refresh(node)
    assert (node.vcpus, node.memory_mb, node.status) == (12, 131072, "enabled")


def test_capacity_below_what_instances_hold_is_refused(panel: TestClient, db: Session) -> None:
    node = make_node(db, vcpus=1, cpu_overcommit=1)
    stopped_instance(db, make_user(db, balance="50.00"), "holds-a-vcpu")  # 1 vCPU, 512 MB
    token = _admin(panel, db)
    form = {**{k: FORM[k] for k in EDIT_FIELDS}, "vcpus": "1", "cpu_overcommit": "1"}
    refused = panel.post(
        f"/admin/nodes/{node.id}", data={**form, "memory_mb": "256", "csrftoken": token}
    )
    assert refused.status_code == 409
    assert "need more than that capacity" in refused.text
    db.refresh(node)
    assert node.memory_mb == 16384
    listed = panel.get("/admin/nodes").text
    assert "vCPU 1 / 1" in listed  # allocated against capacity
    assert "RAM 512 / 16384 MB" in listed
    assert f'href="/admin/instances?node={node.name}">1</a>' in listed  # its one instance


def test_a_down_node_is_red_with_its_error_and_since_when(panel: TestClient, db: Session) -> None:
    node = make_node(db)
    driver = nodes.driver_for(node)
    assert isinstance(driver, FakeDriver)
    driver.reachable = False
    try:
        reconcile.reconcile_node(db, node, stale_after=timedelta(minutes=10))
    finally:
        driver.reachable = True
    _admin(panel, db)
    listed = panel.get("/admin/nodes").text
    assert f'<tr id="node-{node.id}" data-health="down" class="node-down">' in listed
    assert "cannot connect to the hypervisor" in listed
    assert "since " in listed


def test_a_fake_node_needs_a_fake_address() -> None:
    assert nodes.uri_problem("fake", "fake://node-1?variant=dies-while-booting") is None
    assert nodes.uri_problem("fake", "qemu:///system") == "fake://<name>"


def test_junk_in_the_address_is_a_4xx_page(panel: TestClient, db: Session) -> None:
    token = _admin(panel, db)
    gone = "00000000-0000-4000-8000-000000000000"
    assert panel.get("/admin/nodes", params={"cursor": "junk"}).status_code == 422
    assert panel.get("/admin/nodes/not-a-node").status_code == 422
    assert panel.get(f"/admin/nodes/{gone}").status_code == 404
    for path in (f"/admin/nodes/{gone}", f"/admin/nodes/{gone}/status"):
        answer = panel.post(path, data={"status": "disabled", "csrftoken": token})
        assert answer.status_code == 404
    too_long = panel.post(
        "/admin/nodes/new", data={**FORM, "uri": "q" * 600, "nonce": "n", "csrftoken": token}
    )
    assert too_long.status_code == 422
    assert _count(db, "hv-panel-1") == 0


def test_the_api_shows_a_down_node_too(client: TestClient, db: Session) -> None:
    node = make_node(db)
    driver = nodes.driver_for(node)
    assert isinstance(driver, FakeDriver)
    driver.reachable = False
    try:
        reconcile.reconcile_node(db, node, stale_after=timedelta(minutes=10))
    finally:
        driver.reachable = True
    admin = make_user(db, role="admin")
    read = client.get(
        f"/api/v1/admin/nodes/{node.id}", headers=bearer(login(client, admin.username, PASSWORD))
    ).json()
    assert (read["health"], read["health_error"]) == ("down", "cannot connect to the hypervisor")
    assert read["health_changed_at"] is not None
