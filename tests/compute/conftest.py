"""Compute fixtures: the tiny image, and a real libvirt node on this machine.

`./test` installs QEMU and libvirt and starts `libvirtd`; when the daemon is not reachable
these fixtures fail (they never skip): a missing hypervisor is a broken test machine.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from vmcloud.compute import tiny_image
from vmcloud.compute.drivers.libvirt import LibvirtDriver

LIBVIRT_URI = "qemu:///system"


def drop_pool(name: str) -> None:
    """Remove a libvirt storage pool a test (or `vmcloud up` under test) defined, if any."""
    conn = libvirt.open(LIBVIRT_URI)
    try:
        pool = conn.storagePoolLookupByName(name)
        if pool.isActive():
            pool.destroy()
        pool.undefine()
    except libvirt.libvirtError:
        pass
    finally:
        conn.close()


def destroy_domains_under(path: Path) -> None:
    """Remove the VMs whose disks or console logs live under ``path`` (what a `vmcloud up`
    under test left running when its data directory goes away)."""
    conn = libvirt.open(LIBVIRT_URI)
    try:
        for domain in conn.listAllDomains():
            if str(path) not in domain.XMLDesc(0):
                continue
            try:
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
            except libvirt.libvirtError:
                pass
    finally:
        conn.close()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tiny_image.TinyImage]:
    # Under /tmp with searchable parents: QEMU runs as its own user and must read the files.
    root = Path(tempfile.mkdtemp(prefix="vmc-tiny-", dir="/tmp"))
    root.chmod(0o755)
    yield tiny_image.build(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def libvirt_node() -> Iterator[LibvirtDriver]:
    storage = Path(tempfile.mkdtemp(prefix="vmc-disks-", dir="/tmp"))
    storage.chmod(0o755)
    pool = f"vmcloud-test-{uuid.uuid4().hex[:8]}"
    # A namespace of its own: teardown destroys this session's VMs and nobody else's.
    driver = LibvirtDriver(
        LIBVIRT_URI, storage_dir=str(storage), pool_name=pool, namespace=uuid.uuid4().hex[:8]
    )
    try:
        yield driver
    finally:
        for instance_id in driver.list():
            driver.destroy(instance_id)
        drop_pool(pool)
        driver.close()
        shutil.rmtree(storage, ignore_errors=True)
