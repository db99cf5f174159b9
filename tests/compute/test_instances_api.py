"""Instances through the API on a fake-driver node: lifecycle, state machine, validation,
isolation between customers, capacity and addresses."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node, make_pool
from tests.helpers import JobRunner, bearer, login
from vmcloud.catalog.models import Image
from vmcloud.compute import nodes
from vmcloud.compute.drivers.base import VMState
from vmcloud.compute.drivers.fake import FakeDriver
from vmcloud.compute.models import Instance, Node
from vmcloud.site_settings.models import Setting

INSTANCES = "/api/v1/instances"


@pytest.fixture
def node(db: Session) -> Node:
    node = make_node(db)
    make_pool(db, "198.18.7.0/29")  # .1 is the gateway: five addresses to give
    return node


@pytest.fixture
def fake(node: Node) -> FakeDriver:
    driver = nodes.driver_for(node)
    assert isinstance(driver, FakeDriver)
    return driver


@pytest.fixture
def customer(client: TestClient, db: Session) -> dict[str, str]:
    user = make_user(db, balance="500.00", username="vm-owner")
    return bearer(login(client, user.username, PASSWORD))


def _order(client: TestClient, headers: dict[str, str], **overrides: Any) -> Any:
    body = {
        "name": "web-1",
        "product": "nano",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
    }
    body.update(overrides)
    return client.post(INSTANCES, json=body, headers=headers)


def _live_count(db: Session) -> int:
    return db.scalar(select(func.count(Instance.id)).where(Instance.deleted_at.is_(None))) or 0


def test_create_runs_through_the_lifecycle(
    client: TestClient,
    db: Session,
    node: Node,
    fake: FakeDriver,
    customer: dict[str, str],
    job_runner: JobRunner,
) -> None:
    created = _order(client, customer, hostname="web-1.example.com", ssh_keys=[])
    assert created.status_code == 202, created.text
    body = created.json()
    assert body["status"] == "pending"
    assert body["ip_address"] == "198.18.7.2"
    assert body["hostname"] == "web-1.example.com"
    assert (body["region"], body["image"], body["billing_cycle"]) == (
        "local",
        "tiny-linux",
        "monthly",
    )
    assert {"region": "local", "image": "tiny-linux"}.items() <= body["metadata_json"].items()
    instance_id = uuid.UUID(body["id"])

    job_runner.run("compute.")
    assert fake.state(instance_id) == VMState.RUNNING
    shown = client.get(f"{INSTANCES}/{instance_id}", headers=customer).json()
    assert shown["status"] == "running" and shown["started_at"]
    db.refresh(node)
    assert (node.allocated_vcpus, node.allocated_memory_mb, node.allocated_disk_gb) == (1, 512, 10)

    for action, transitional, final in (
        ("stop", "stopping", "stopped"),
        ("start", "starting", "running"),
        ("reboot", "rebooting", "running"),
    ):
        response = client.post(
            f"{INSTANCES}/{instance_id}/actions", json={"type": action}, headers=customer
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == transitional
        job_runner.run("compute.")
        assert client.get(f"{INSTANCES}/{instance_id}", headers=customer).json()["status"] == final
    assert fake.vms[instance_id].boots == 3

    deleted = client.delete(f"{INSTANCES}/{instance_id}", headers=customer)
    assert deleted.status_code == 202
    assert deleted.json()["status"] == "deleting"
    job_runner.run("compute.")
    assert fake.state(instance_id) == VMState.MISSING
    assert client.get(f"{INSTANCES}/{instance_id}", headers=customer).status_code == 404
    row = db.get(Instance, instance_id)
    assert row is not None
    db.refresh(row)
    assert row.status == "deleted" and row.deleted_at is not None
    db.refresh(node)
    assert (node.allocated_vcpus, node.allocated_memory_mb, node.allocated_disk_gb) == (0, 0, 0)
    # The address is free again.
    assert _order(client, customer).json()["ip_address"] == "198.18.7.2"


@pytest.mark.parametrize(
    ("action", "status"),
    [("start", "running"), ("stop", "stopped"), ("reboot", "stopped"), ("stop", "pending")],
)
def test_actions_not_allowed_now_are_409(
    client: TestClient,
    db: Session,
    node: Node,
    customer: dict[str, str],
    action: str,
    status: str,
) -> None:
    instance_id = _order(client, customer).json()["id"]
    db.execute(update(Instance).where(Instance.id == instance_id).values(status=status))
    db.flush()
    response = client.post(
        f"{INSTANCES}/{instance_id}/actions", json={"type": action}, headers=customer
    )
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/invalid-state"


def test_another_customers_instance_is_404_everywhere(
    client: TestClient, db: Session, node: Node, customer: dict[str, str]
) -> None:
    instance_id = _order(client, customer).json()["id"]
    stranger = make_user(db, balance="500.00", username="stranger")
    other = bearer(login(client, stranger.username, PASSWORD))
    base = f"{INSTANCES}/{instance_id}"
    calls = [
        ("GET", base, None),
        ("PATCH", base, {"name": "mine now"}),
        ("DELETE", base, None),
        ("POST", f"{base}/actions", {"type": "stop"}),
        ("GET", f"{base}/metrics", None),
    ]
    for method, url, body in calls:
        response = client.request(method, url, json=body, headers=other)
        assert response.status_code == 404, (method, url)
    assert instance_id not in {
        i["id"] for i in client.get(INSTANCES, headers=other).json()["items"]
    }
    assert db.get(Instance, uuid.UUID(instance_id)).status == "pending"  # type: ignore[union-attr]


def test_support_reads_any_instance_but_changes_none(
    client: TestClient, db: Session, node: Node, customer: dict[str, str]
) -> None:
    instance_id = _order(client, customer).json()["id"]
    staff = make_user(db, balance="500.00", role="support")
    headers = bearer(login(client, staff.username, PASSWORD))
    assert client.get(f"{INSTANCES}/{instance_id}", headers=headers).status_code == 200
    listed = client.get("/api/v1/admin/instances", headers=headers).json()["items"]
    assert instance_id in {i["id"] for i in listed}
    assert client.delete(f"{INSTANCES}/{instance_id}", headers=headers).status_code == 404


def test_customers_see_no_node_or_reservation_and_staff_see_both_in_the_admin_list(
    client: TestClient, db: Session, node: Node, customer: dict[str, str]
) -> None:
    ordered = _order(client, customer, user_data="#cloud-config\npassword: hunter2")
    instance_id = ordered.json()["id"]
    admin = bearer(login(client, make_user(db, role="admin").username, PASSWORD))
    for headers in (customer, admin):  # /instances answers the customer's view to anyone
        for shown in (
            ordered.json(),
            client.get(f"{INSTANCES}/{instance_id}", headers=headers).json(),
            client.get(INSTANCES, headers=customer).json()["items"][0],
        ):
            assert node.name not in str(shown)
            assert not {"node", "node_id", "reserved"} & (shown.keys() | shown["metadata_json"])
            assert not any(key.startswith("reserved") for key in shown)
            assert shown["region"] == "local" and shown["metadata_json"]["image"] == "tiny-linux"

    listed = client.get("/api/v1/admin/instances", headers=admin).json()["items"]
    (staff_view,) = [i for i in listed if i["id"] == instance_id]
    assert (staff_view["node"], staff_view["node_id"]) == (node.name, str(node.id))
    assert staff_view["metadata_json"]["node"] == node.name
    reserved = [staff_view[f"reserved_{k}"] for k in ("vcpus", "memory_mb", "disk_gb")]
    assert reserved == [1, 512, 10]
    assert (staff_view["region"], staff_view["billing_cycle"]) == ("local", "monthly")
    assert "hunter2" not in str(listed)


def test_support_cannot_rename_a_customers_instance(
    client: TestClient, db: Session, node: Node, customer: dict[str, str]
) -> None:
    instance_id = _order(client, customer).json()["id"]
    staff = make_user(db, role="support")
    headers = bearer(login(client, staff.username, PASSWORD))
    renamed = client.patch(f"{INSTANCES}/{instance_id}", json={"name": "hijacked"}, headers=headers)
    assert renamed.status_code == 404, renamed.text
    assert db.get(Instance, uuid.UUID(instance_id)).name == "web-1"  # type: ignore[union-attr]


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("name", {"name": ""}),
    ("name", {"name": "x" * 65}),
    ("hostname", {"hostname": "-leading"}),
    ("hostname", {"hostname": "trailing-"}),
    ("hostname", {"hostname": "a..b"}),
    ("hostname", {"hostname": "under_score"}),
    ("hostname", {"hostname": "x" * 64}),
    ("hostname", {"hostname": ("a" * 60 + ".") * 5}),
    ("product", {"product": "no-such-plan"}),
    ("product", {"product": str(uuid.uuid4())}),
    ("region", {"region": "atlantis"}),
    ("image", {"image": "windows-95"}),
    ("image", {"image": "debian-12"}),  # disabled
    ("billing_cycle", {"billing_cycle": "weekly"}),
    ("ssh_keys", {"ssh_keys": ["not a key"]}),
    ("ssh_keys", {"ssh_keys": "ssh-ed25519 AAAA"}),
    ("user_data", {"user_data": "x" * 70_000}),
    ("status", {"status": "running"}),
]


@pytest.mark.parametrize(
    ("field", "change"), INVALID, ids=[f"{f}-{i}" for i, (f, _) in enumerate(INVALID)]
)
def test_invalid_orders_are_422_and_create_nothing(
    client: TestClient,
    db: Session,
    node: Node,
    customer: dict[str, str],
    field: str,
    change: dict[str, Any],
) -> None:
    before = _live_count(db)
    response = _order(client, customer, **change)
    assert response.status_code == 422, response.text
    assert field in {e["field"].split(".")[0] for e in response.json()["errors"]}
    assert _live_count(db) == before
    db.refresh(node)
    assert node.allocated_vcpus == 0


def test_an_image_too_big_for_the_plan_is_422(
    client: TestClient, db: Session, node: Node, customer: dict[str, str]
) -> None:
    db.add(Image(slug="huge-os", name="Huge", distro="x", version="1", min_disk_gb=1000))
    db.flush()
    response = _order(client, customer, image="huge-os")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "image"


def test_unverified_customers_cannot_order(client: TestClient, db: Session, node: Node) -> None:
    user = make_user(db, balance="500.00", email_verified=False)
    response = _order(client, bearer(login(client, user.username, PASSWORD)))
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/email-unverified"


def test_no_capacity_is_503_with_nothing_left_behind(
    client: TestClient, db: Session, customer: dict[str, str]
) -> None:
    make_node(db, vcpus=1, memory_mb=256, cpu_overcommit=1)  # too small for any plan
    make_pool(db, "198.18.9.0/29")
    response = _order(client, customer)
    assert response.status_code == 503
    assert response.json()["type"] == "/problems/no-capacity"
    assert _live_count(db) == 0


def test_an_exhausted_pool_is_503_and_releases_the_reservation(
    client: TestClient, db: Session, customer: dict[str, str]
) -> None:
    node = make_node(db)
    make_pool(db, "198.18.8.0/30")  # .1 gateway, .2 the only address
    assert _order(client, customer).status_code == 202
    response = _order(client, customer, name="web-2")
    assert response.status_code == 503
    assert response.json()["type"] == "/problems/no-addresses"
    db.refresh(node)
    assert node.allocated_vcpus == 1  # only the first instance holds capacity


def test_the_instance_quota_is_enforced(
    client: TestClient, db: Session, node: Node, customer: dict[str, str]
) -> None:
    db.execute(
        update(Setting).where(Setting.key == "compute.max_instances_per_user").values(value="1")
    )
    db.flush()
    assert _order(client, customer).status_code == 202
    response = _order(client, customer, name="second")
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/quota-exceeded"


def test_a_create_that_keeps_failing_ends_in_error_with_the_reason(
    client: TestClient,
    db: Session,
    customer: dict[str, str],
    job_runner: JobRunner,
) -> None:
    make_node(db, variant="fails-on-create")
    make_pool(db, "198.18.10.0/29")
    instance_id = _order(client, customer).json()["id"]
    job_runner.attempts = 4  # the last of the five attempts
    job_runner.run("compute.")
    shown = client.get(f"{INSTANCES}/{instance_id}", headers=customer).json()
    assert shown["status"] == "error"
    assert "refused" in shown["error_reason"]


def test_rename(client: TestClient, node: Node, customer: dict[str, str]) -> None:
    instance_id = _order(client, customer).json()["id"]
    renamed = client.patch(f"{INSTANCES}/{instance_id}", json={"name": "db-1"}, headers=customer)
    assert renamed.json()["name"] == "db-1"
    assert (
        client.patch(
            f"{INSTANCES}/{instance_id}", json={"status": "running"}, headers=customer
        ).status_code
        == 422
    )


def test_list_filters_by_status(
    client: TestClient, db: Session, node: Node, customer: dict[str, str], job_runner: JobRunner
) -> None:
    first = _order(client, customer, name="a").json()["id"]
    job_runner.run("compute.")
    second = _order(client, customer, name="b").json()["id"]
    running = client.get(INSTANCES, params={"status": "running"}, headers=customer).json()
    pending = client.get(INSTANCES, params={"status": "pending"}, headers=customer).json()
    assert [i["id"] for i in running["items"]] == [first]
    assert [i["id"] for i in pending["items"]] == [second]
    assert client.get(INSTANCES, params={"status": "bogus"}, headers=customer).status_code == 422


def test_user_data_is_not_shown_back(
    client: TestClient, node: Node, customer: dict[str, str]
) -> None:
    body = _order(client, customer, user_data="#cloud-config\npassword: hunter2").json()
    assert "user_data" not in body["metadata_json"]
    assert "hunter2" not in str(body)


def test_the_vm_gets_what_was_reserved_even_if_the_plan_changed_before_it_was_built(
    client: TestClient,
    db: Session,
    node: Node,
    fake: FakeDriver,
    customer: dict[str, str],
    job_runner: JobRunner,
) -> None:
    instance_id = uuid.UUID(_order(client, customer).json()["id"])
    from vmcloud.catalog.models import Product

    db.execute(
        update(Product)
        .where(Product.slug == "nano")
        .values(specs_json={"vcpus": 4, "memory_mb": 4096, "disk_gb": 80})
    )
    db.flush()
    job_runner.run("compute.")
    spec = fake.vms[instance_id].spec
    assert (spec.vcpus, spec.memory_mb, spec.disk_gb) == (1, 512, 10)  # what the node holds


def test_capacity_released_is_what_was_reserved_even_if_the_plan_changed(
    client: TestClient, db: Session, node: Node, customer: dict[str, str], job_runner: JobRunner
) -> None:
    instance_id = _order(client, customer).json()["id"]
    job_runner.run("compute.")
    from vmcloud.catalog.models import Product

    db.execute(
        update(Product)
        .where(Product.slug == "nano")
        .values(specs_json={"vcpus": 4, "memory_mb": 4096, "disk_gb": 80})
    )
    db.flush()
    assert client.delete(f"{INSTANCES}/{instance_id}", headers=customer).status_code == 202
    job_runner.run("compute.")
    db.refresh(node)
    assert (node.allocated_vcpus, node.allocated_memory_mb, node.allocated_disk_gb) == (0, 0, 0)
    assert _instance_status(db, instance_id) == "deleted"


def test_a_vm_that_dies_while_booting_ends_in_error(
    client: TestClient, db: Session, customer: dict[str, str], job_runner: JobRunner
) -> None:
    dying = make_node(db, variant="dies-while-booting")
    make_pool(db, "198.18.11.0/29")
    instance_id = _order(client, customer).json()["id"]
    job_runner.attempts = 4
    job_runner.run("compute.")
    shown = client.get(f"{INSTANCES}/{instance_id}", headers=customer).json()
    assert shown["status"] == "error"
    assert "did not stay up" in shown["error_reason"]
    assert nodes.driver_for(dying).list() == []  # the crashed VM was removed


def test_user_data_stays_out_of_the_audit_trail(
    client: TestClient, db: Session, node: Node, customer: dict[str, str]
) -> None:
    from vmcloud.audit.models import AuditLog

    _order(client, customer, user_data="#cloud-config\npassword: hunter2")
    dump = " ".join(
        str((r.old_values, r.new_values, r.metadata_json)) for r in db.scalars(select(AuditLog))
    )
    assert "instance.create" in {r.action for r in db.scalars(select(AuditLog))}
    assert "hunter2" not in dump


def _instance_status(db: Session, instance_id: str) -> str | None:
    row = db.get(Instance, uuid.UUID(instance_id))
    assert row is not None
    db.refresh(row)
    return row.status
