"""Per-node image locations, and the KVM probe that decides how the local node runs guests."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import libvirt
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.compute.conftest import LIBVIRT_URI, domains_under
from tests.compute.test_instances_api import _order
from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node, make_pool
from tests.helpers import JobRunner, bearer, login
from vmcloud.compute import local, nodes, pools
from vmcloud.compute.drivers.fake import FakeDriver
from vmcloud.compute.tiny_image import TinyImage


def test_a_node_boots_an_image_from_its_own_copy(
    client: TestClient, db: Session, job_runner: JobRunner
) -> None:
    admin = bearer(login(client, make_user(db, balance="500.00", role="admin").username, PASSWORD))
    node = make_node(db)
    make_pool(db, "198.18.60.0/29")
    patched = client.patch(
        f"/api/v1/admin/nodes/{node.id}",
        json={
            "image_boot_json": {"tiny-linux": {"kernel": "/node/vmlinuz", "initrd": "/node/i.gz"}}
        },
        headers=admin,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["image_boot_json"] == {
        "tiny-linux": {"kernel": "/node/vmlinuz", "initrd": "/node/i.gz"}
    }
    bad = client.patch(
        f"/api/v1/admin/nodes/{node.id}",
        json={"image_boot_json": {"tiny-linux": {"kernel": "relative/path"}}},
        headers=admin,
    )
    assert bad.status_code == 422

    customer = bearer(login(client, make_user(db, balance="500.00").username, PASSWORD))
    instance_id = uuid.UUID(_order(client, customer).json()["id"])
    job_runner.run("compute.")
    driver = nodes.driver_for(node)
    assert isinstance(driver, FakeDriver)
    boot = driver.vms[instance_id].spec.boot
    assert (boot.kernel, boot.initrd) == ("/node/vmlinuz", "/node/i.gz")
    assert boot.cmdline  # the rest still comes from the image


def test_the_kvm_probe_leaves_nothing_behind(tiny: TinyImage) -> None:
    storage = Path(tempfile.mkdtemp(prefix="vmc-probe-", dir="/tmp"))
    storage.chmod(0o755)
    works = local.kvm_works(storage, tiny, wait=3)
    assert isinstance(works, bool)  # whichever this machine's answer is
    conn = libvirt.open(LIBVIRT_URI)
    try:
        # The probe's domain is known by its disk and console in this test's directory (its
        # name, "vmcloud-<uuid>", is like the probes of a `vmcloud up` running beside it).
        assert domains_under(conn, storage) == []
        pool = conn.storagePoolLookupByName(pools.pool_name(str(storage)))
        pool.refresh(0)
        assert pool.listVolumes() == []
        pool.destroy()
        pool.undefine()
        assert local.kvm_works(storage, None) is False  # no image: no probe, no claim
    finally:
        conn.close()
        shutil.rmtree(storage, ignore_errors=True)
