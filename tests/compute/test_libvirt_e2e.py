"""End to end on a real libvirt node: an order through the API boots a real QEMU guest, which
then stops, starts, reboots and is deleted without a trace."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.compute.conftest import LIBVIRT_URI, drop_pool
from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import boot_tiny_image, make_node, make_pool
from tests.helpers import JobRunner, bearer, login
from vmcloud.compute import nodes, pools
from vmcloud.compute.models import Instance, Node
from vmcloud.compute.tiny_image import BOOT_MARKER, READY_MARKER, TinyImage

pytestmark = pytest.mark.slow

INSTANCES = "/api/v1/instances"


@pytest.fixture
def real_node(db: Session, tiny: TinyImage) -> Iterator[Node]:
    storage = Path(tempfile.mkdtemp(prefix="vmc-e2e-", dir="/tmp"))
    storage.chmod(0o755)
    node = make_node(
        db,
        driver="libvirt",
        uri=LIBVIRT_URI,
        storage_dir=str(storage),
        name=f"e2e-{uuid.uuid4().hex[:6]}",
    )
    make_pool(db, "198.18.40.0/29")
    boot_tiny_image(db, tiny)
    db.flush()
    try:
        yield node
    finally:
        driver = nodes.driver_for(node)
        for leftover in driver.list():
            driver.destroy(leftover)
        drop_pool(pools.pool_name(node.storage_dir))
        shutil.rmtree(storage, ignore_errors=True)


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


def test_a_real_vm_from_order_to_deletion(
    client: TestClient, db: Session, real_node: Node, job_runner: JobRunner
) -> None:
    make_product(
        db,
        slug="e2e-tiny",
        specs_json={"vcpus": 1, "memory_mb": 192, "disk_gb": 1},
        pricing_json={"monthly": "1.00"},
    )
    user = make_user(db, balance="500.00")
    headers = bearer(login(client, user.username, PASSWORD))
    order = {
        "name": "real-one",
        "product": "e2e-tiny",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
        "hostname": "real-one",
    }
    created = client.post(INSTANCES, json=order, headers=headers)
    assert created.status_code == 202, created.text
    instance_id = uuid.UUID(created.json()["id"])

    job_runner.run("compute.")
    assert client.get(f"{INSTANCES}/{instance_id}", headers=headers).json()["status"] == "running"
    console = _console(real_node, instance_id, READY_MARKER)
    assert "hostname=real-one" in console

    def act(action: str, final: str) -> None:
        response = client.post(
            f"{INSTANCES}/{instance_id}/actions", json={"type": action}, headers=headers
        )
        assert response.status_code == 202, response.text
        job_runner.run("compute.")
        shown = client.get(f"{INSTANCES}/{instance_id}", headers=headers).json()
        assert shown["status"] == final, shown

    act("stop", "stopped")
    act("start", "running")
    _console(real_node, instance_id, READY_MARKER, count=2)
    act("reboot", "running")
    _console(real_node, instance_id, BOOT_MARKER, count=3)

    disk = Path(real_node.storage_dir) / f"{instance_id}.qcow2"
    assert disk.exists()
    assert client.delete(f"{INSTANCES}/{instance_id}", headers=headers).status_code == 202
    job_runner.run("compute.")

    assert instance_id not in nodes.driver_for(real_node).list()
    conn = libvirt.open(LIBVIRT_URI)
    try:
        names = [d.name() for d in conn.listAllDomains(0)]
    finally:
        conn.close()
    assert not [name for name in names if str(instance_id) in name]
    assert not disk.exists()
    assert not (Path(real_node.storage_dir) / f"{instance_id}.console.log").exists()
    row = db.get(Instance, instance_id)
    assert row is not None
    db.refresh(row)
    assert row.status == "deleted" and row.deleted_at is not None  # its address is free again
    db.refresh(real_node)
    assert real_node.allocated_vcpus == 0
