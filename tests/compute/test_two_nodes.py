"""Two real hypervisors on this machine: the system libvirt daemon and an unprivileged user's
session daemon (``scripts/start-second-libvirt.sh``), each registered as a node. Orders spread
over both and boot real guests; a disabled node gets nothing; a node whose daemon dies fails
its operations cleanly while the other keeps working, and serves again once it is back."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import libvirt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.compute.conftest import LIBVIRT_URI, SecondLibvirt, drop_pool
from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import boot_tiny_image, make_node, make_pool
from tests.helpers import JobRunner, bearer, login
from vmcloud.compute import metrics, nodes, pools, reconcile, tasks
from vmcloud.compute.models import Instance, Node
from vmcloud.compute.tiny_image import READY_MARKER, TinyImage

pytestmark = pytest.mark.slow

INSTANCES = "/api/v1/instances"
ADMIN_NODES = "/api/v1/admin/nodes"


@pytest.fixture
def two_nodes(
    db: Session, tiny: TinyImage, second_libvirt: SecondLibvirt
) -> Iterator[tuple[Node, Node]]:
    """(the system daemon's node, the second daemon's node), alike in size."""
    storage = Path(tempfile.mkdtemp(prefix="vmc-two-", dir="/tmp"))
    storage.chmod(0o755)
    size = {"vcpus": 4, "memory_mb": 2048, "disk_gb": 20}
    first = make_node(
        db,
        driver="libvirt",
        uri=LIBVIRT_URI,
        storage_dir=str(storage),
        name=f"system-{uuid.uuid4().hex[:6]}",
        **size,
    )
    second = make_node(
        db,
        driver="libvirt",
        uri=second_libvirt.uri,
        storage_dir=str(second_libvirt.storage_dir()),
        network_mode="user",  # a session daemon has no bridge of its own
        name=f"session-{uuid.uuid4().hex[:6]}",
        **size,
    )
    make_pool(db, "198.18.44.0/28")
    boot_tiny_image(db, tiny)
    make_product(
        db,
        slug="two-nodes-tiny",
        specs_json={"vcpus": 1, "memory_mb": 192, "disk_gb": 1},
        pricing_json={"monthly": "1.00"},
    )
    db.flush()
    try:
        yield first, second
    finally:
        second_libvirt.start()  # a test that killed it may have stopped before restarting it
        for node in (first, second):
            driver = nodes.driver_for(node)
            for leftover in driver.list():
                driver.destroy(leftover)
            drop_pool(pools.pool_name(node.storage_dir), node.uri)
            driver.close()
        shutil.rmtree(storage, ignore_errors=True)


def _order(client: TestClient, headers: dict[str, str], name: str) -> uuid.UUID:
    body = {
        "name": name,
        "product": "two-nodes-tiny",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
        "hostname": name,
    }
    created = client.post(INSTANCES, json=body, headers=headers)
    assert created.status_code == 202, created.text
    return uuid.UUID(created.json()["id"])


def _instance(db: Session, instance_id: uuid.UUID) -> Instance:
    instance = db.get(Instance, instance_id, populate_existing=True)
    assert instance is not None
    return instance


def _console(node: Node, instance_id: uuid.UUID, text: str, count: int = 1) -> str:
    driver = nodes.driver_for(node)
    deadline = time.monotonic() + 60
    output = ""
    while time.monotonic() < deadline:
        output = driver.console_output(instance_id)
        if output.count(text) >= count:
            return output
        time.sleep(0.25)
    raise AssertionError(f"no {text!r} x{count} on the console:\n{output[-1500:]}")


def _hypervisor_has(uri: str, instance_id: uuid.UUID) -> bool:
    """Asked of the daemon itself, not through the platform."""
    conn = libvirt.open(uri)
    try:
        conn.lookupByUUIDString(str(instance_id))
        return True
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()


def _set_status(client: TestClient, admin: dict[str, str], node: Node, status: str) -> None:
    patched = client.patch(f"{ADMIN_NODES}/{node.id}", json={"status": status}, headers=admin)
    assert patched.status_code == 200, patched.text


def test_orders_spread_over_two_real_hypervisors_and_skip_a_disabled_one(
    client: TestClient, db: Session, two_nodes: tuple[Node, Node], job_runner: JobRunner
) -> None:
    first, second = two_nodes
    admin = bearer(login(client, make_user(db, role="admin").username, PASSWORD))
    customer = bearer(login(client, make_user(db, balance="500.00").username, PASSWORD))

    # Spread (the default): the second order goes where the first did not.
    ids = [_order(client, customer, f"spread-{n}") for n in range(2)]
    job_runner.run("compute.")
    placed = {_instance(db, iid).node_id: iid for iid in ids}
    assert set(placed) == {first.id, second.id}
    for node, other in ((first, second), (second, first)):
        iid = placed[node.id]
        assert _instance(db, iid).status == "running"
        assert _hypervisor_has(node.uri, iid) and not _hypervisor_has(other.uri, iid)
        console = _console(node, iid, READY_MARKER)
        assert f"hostname={_instance(db, iid).hostname}" in console

    # The second node disabled: both orders go to the first, though spreading would have put
    # one of them on the second.
    _set_status(client, admin, second, "disabled")
    later = [_order(client, customer, f"after-{n}") for n in range(2)]
    job_runner.run("compute.")
    for iid in later:
        instance = _instance(db, iid)
        assert (instance.node_id, instance.status) == (first.id, "running")
        assert _hypervisor_has(first.uri, iid) and not _hypervisor_has(second.uri, iid)
    db.refresh(second)
    assert second.allocated_memory_mb == 192  # the one from before it was disabled


def test_a_node_whose_daemon_dies_fails_cleanly_and_serves_again_when_it_is_back(
    client: TestClient,
    db: Session,
    two_nodes: tuple[Node, Node],
    second_libvirt: SecondLibvirt,
    job_runner: JobRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = two_nodes
    admin = bearer(login(client, make_user(db, role="admin").username, PASSWORD))
    customer = bearer(login(client, make_user(db, balance="500.00").username, PASSWORD))
    ids = [_order(client, customer, f"pair-{n}") for n in range(2)]
    job_runner.run("compute.")
    placed = {_instance(db, iid).node_id: iid for iid in ids}
    on_first, on_second = placed[first.id], placed[second.id]
    # (That guests boot on both nodes is the test above; here the daemons' answers matter.)

    second_libvirt.kill()

    # Reads never touch a hypervisor; an action is accepted and its job fails on the node.
    shown = client.get(f"{INSTANCES}/{on_second}", headers=customer)
    assert (shown.status_code, shown.json()["status"]) == (200, "running")
    stop = client.post(f"{INSTANCES}/{on_second}/actions", json={"type": "stop"}, headers=customer)
    assert stop.status_code == 202, stop.text
    assert tasks.RETRY.max_attempts is not None
    job_runner.attempts = tasks.RETRY.max_attempts - 1  # the retries are used up
    job_runner.run("compute.")
    failed = _instance(db, on_second)
    assert failed.status == "error"  # not left "stopping"
    assert "cannot reach the hypervisor" in (failed.error_reason or "")
    shown = client.get(f"{INSTANCES}/{on_second}", headers=customer)
    assert (shown.status_code, shown.json()["status"]) == (200, "error")

    # The reconciler passes the node over (logged as unreachable) and settles the other one.
    with caplog.at_level(logging.WARNING):
        reconcile.reconcile_all(db, stale_after=timedelta(minutes=5))
    unreachable = [r.msg for r in caplog.records if "reconcile.node_unreachable" in str(r.msg)]
    assert len(unreachable) == 1 and second.name in str(unreachable[0])
    db.refresh(first)
    db.refresh(second)
    assert first.last_seen_at is not None and second.last_seen_at is None
    metrics.collect_all(db)  # the usage pass goes by the node too

    # The first node keeps working.
    job_runner.attempts = 0
    reboot = client.post(
        f"{INSTANCES}/{on_first}/actions", json={"type": "reboot"}, headers=customer
    )
    assert reboot.status_code == 202, reboot.text
    job_runner.run("compute.")
    assert _instance(db, on_first).status == "running"
    assert _hypervisor_has(first.uri, on_first)

    # Back again: its VM outlived the daemon, the reconciler sees the node, the failed instance
    # can be deleted, and a new one boots there.
    second_libvirt.start()
    assert _hypervisor_has(second.uri, on_second)
    reconcile.reconcile_all(db, stale_after=timedelta(minutes=5))
    db.refresh(second)
    assert second.last_seen_at is not None
    deleted = client.delete(f"{INSTANCES}/{on_second}", headers=customer)
    assert deleted.status_code == 202, deleted.text
    job_runner.run("compute.")
    assert _instance(db, on_second).status == "deleted"
    assert not _hypervisor_has(second.uri, on_second)

    _set_status(client, admin, first, "disabled")
    again = _order(client, customer, "again")
    job_runner.run("compute.")
    instance = _instance(db, again)
    assert (instance.node_id, instance.status) == (second.id, "running")
    assert _hypervisor_has(second.uri, again)
