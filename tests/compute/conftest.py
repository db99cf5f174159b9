"""Compute fixtures: the tiny image, a real libvirt node on this machine, and a second real
hypervisor beside it (an unprivileged user's session daemon, ``scripts/start-second-libvirt.sh``).

`./test` installs QEMU and libvirt and starts `libvirtd`; when the daemon is not reachable
these fixtures fail (they never skip): a missing hypervisor is a broken test machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from vmcloud.compute import tiny_image
from vmcloud.compute.drivers.libvirt import LibvirtDriver

LIBVIRT_URI = "qemu:///system"


SECOND_LIBVIRT_SCRIPT = Path(__file__).resolve().parents[2] / "scripts/start-second-libvirt.sh"
SECOND_LIBVIRT_USER = "vmcloud-node2"


def drop_pool(name: str, uri: str = LIBVIRT_URI) -> None:
    """Remove a libvirt storage pool a test (or `vmcloud up` under test) defined, if any."""
    conn = libvirt.open(uri)
    try:
        pool = conn.storagePoolLookupByName(name)
        if pool.isActive():
            pool.destroy()
        pool.undefine()
    except libvirt.libvirtError:
        pass
    finally:
        conn.close()


def domains_under(conn: libvirt.virConnect, path: Path) -> list[libvirt.virDomain]:
    """The VMs whose definition names a file under ``path`` (their disks, console logs)."""
    found = []
    for domain in conn.listAllDomains():
        try:
            if str(path) in domain.XMLDesc(0):
                found.append(domain)
        except libvirt.libvirtError:  # removed meanwhile (another test's VM)
            continue
    return found


def destroy_domains_under(path: Path) -> None:
    """Remove the VMs whose disks or console logs live under ``path`` (what a `vmcloud up`
    under test left running when its data directory goes away)."""
    conn = libvirt.open(LIBVIRT_URI)
    try:
        for domain in domains_under(conn, path):
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


@dataclass(frozen=True)
class SecondLibvirt:
    """A libvirt session daemon of its own for this test run: it runs as ``vmcloud-node2``
    and keeps everything (configuration, sockets, disks) under ``home``."""

    home: Path

    @property
    def uri(self) -> str:
        return f"qemu+unix:///session?socket={self.home}/run/libvirt/libvirt-sock"

    def start(self) -> None:
        """Start the daemon (again): its running VMs are picked up where they are."""
        started = subprocess.run(
            [str(SECOND_LIBVIRT_SCRIPT), "--dir", str(self.home)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == self.uri

    def kill(self) -> None:
        """SIGKILL the daemon, as a crash would; its VMs' QEMU processes live on."""
        pid = int((self.home / "run/libvirt/libvirtd.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                libvirt.open(self.uri).close()
            except libvirt.libvirtError:
                return
            time.sleep(0.05)
        raise AssertionError("the second libvirt daemon still answers after SIGKILL")

    def storage_dir(self) -> Path:
        """A disk directory the daemon's user owns."""
        path = self.home / f"disks-{uuid.uuid4().hex[:8]}"
        path.mkdir(mode=0o755)
        shutil.chown(path, SECOND_LIBVIRT_USER, SECOND_LIBVIRT_USER)
        return path

    def clear(self) -> None:
        """Destroy every VM and storage pool the daemon has (all of them are this run's)."""
        conn = libvirt.open(self.uri)
        try:
            for domain in conn.listAllDomains(0):
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
            for pool in conn.listAllStoragePools(0):
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
        finally:
            conn.close()


@pytest.fixture(scope="session")
def second_libvirt() -> Iterator[SecondLibvirt]:
    # Searchable by everyone (the daemon's user reaches it), private to this run.
    home = Path(tempfile.mkdtemp(prefix="vmc-node2-", dir="/tmp"))
    home.chmod(0o755)
    daemon = SecondLibvirt(home / "home")
    daemon.start()
    try:
        yield daemon
    finally:
        try:
            daemon.start()  # a test that killed it may have failed before it restarted it
            daemon.clear()
        finally:
            subprocess.run(
                [str(SECOND_LIBVIRT_SCRIPT), "--dir", str(daemon.home), "--stop"], check=False
            )
            shutil.rmtree(home, ignore_errors=True)
