"""Making this machine a compute node for a single-machine install (``vmcloud up``)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import libvirt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vmcloud.catalog.models import Image, Region
from vmcloud.compute import tiny_image
from vmcloud.compute.drivers.base import BootSource, DriverError, VMSpec
from vmcloud.compute.drivers.libvirt import LibvirtDriver
from vmcloud.compute.models import IpPool, Node
from vmcloud.compute.pools import pool_name
from vmcloud.core.logging import get_logger

log = get_logger(__name__)
LOCAL_URI = "qemu:///system"
LOCAL_NODE = "local"
LOCAL_POOL = "local-dev"
# QEMU's user-mode network gives every guest 10.0.2.15 behind NAT; the platform still hands
# out a unique address per instance from this pool, which bridged nodes pass to the guest.
LOCAL_CIDR = "10.240.0.0/24"


def hypervisor_reachable(uri: str = LOCAL_URI) -> str | None:
    """``None`` when libvirt answers at ``uri``, else why not."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        return str(exc.get_error_message())
    conn.close()
    return None


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


def ensure_tiny_image(db: Session, data_dir: Path) -> str:
    """Build the tiny guest once and register it; returns a line for the operator."""
    image = db.scalar(select(Image).where(Image.slug == "tiny-linux"))
    boot = (image.boot_json if image else None) or {}
    if boot.get("kernel") and Path(str(boot["kernel"])).exists():
        return "tiny-linux image ready"
    try:
        built = tiny_image.build((data_dir / "images" / "tiny-linux").resolve())
    except tiny_image.TinyImageError as exc:
        return f"tiny-linux image not built: {exc}"
    if image is None:
        image = Image(slug="tiny-linux", name="Tiny Linux (busybox)", distro="busybox", version="1")
        db.add(image)
    image.boot_json = {
        "kind": "kernel",
        "kernel": str(built.kernel),
        "initrd": str(built.initrd),
        "cmdline": built.cmdline,
    }
    image.status = "active"
    db.flush()
    return "tiny-linux image built"


def kvm_works(storage: Path, image: tiny_image.TinyImage | None, wait: float = 10) -> bool:
    """Whether KVM really runs guests here: boot the tiny image with ``type='kvm'`` and wait
    for its ready marker. Opening ``/dev/kvm`` is not enough (nested setups accept the device
    and then hang the guest)."""
    if image is None or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    driver = LibvirtDriver(
        LOCAL_URI, storage_dir=str(storage), pool_name=pool_name(str(storage)), virt_type="kvm"
    )
    probe = uuid.uuid4()
    spec = VMSpec(
        instance_id=probe,
        hostname="kvm-probe",
        vcpus=1,
        memory_mb=128,
        disk_gb=1,
        boot=BootSource(
            kind="kernel", kernel=str(image.kernel), initrd=str(image.initrd), cmdline=image.cmdline
        ),
    )
    try:
        driver.create(spec)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if tiny_image.READY_MARKER in driver.console_output(probe):
                return True
            time.sleep(0.2)
        return False
    except DriverError:
        return False
    finally:
        try:
            driver.destroy(probe)
        except DriverError:
            log.warning("kvm_probe.cleanup_failed", instance_id=str(probe))
        driver.close()


def ensure_local_node(db: Session, data_dir: Path) -> str:
    """Register this machine as node ``local`` (and an address pool for region ``local``) when
    the platform has no node yet and libvirt answers; returns a line for the operator."""
    if db.scalar(select(func.count(Node.id))):
        return "compute nodes: already registered"
    problem = hypervisor_reachable()
    if problem is not None:
        return f"no compute node: libvirt is not reachable at {LOCAL_URI} ({problem})"
    region = db.scalar(select(Region).where(Region.slug == "local"))
    if region is None:
        return "no compute node: region 'local' does not exist"
    storage = (data_dir / "disks").resolve()
    storage.mkdir(parents=True, exist_ok=True)
    os.chmod(storage, 0o755)  # noqa: S103 - QEMU runs as its own user
    disk_gb = max(1, shutil.disk_usage(storage).free // 1024**3 - 10)
    image = db.scalar(select(Image).where(Image.slug == "tiny-linux"))
    boot = (image.boot_json if image else None) or {}
    built = (
        tiny_image.TinyImage(kernel=Path(boot["kernel"]), initrd=Path(boot["initrd"]))
        if boot.get("kernel") and boot.get("initrd")
        else None
    )
    virt_type = "kvm" if kvm_works(storage, built) else "qemu"
    node = Node(
        name=LOCAL_NODE,
        region_id=region.id,
        driver="libvirt",
        uri=LOCAL_URI,
        storage_dir=str(storage),
        network_mode="user",
        virt_type=virt_type,
        vcpus=os.cpu_count() or 1,
        memory_mb=max(512, _memory_mb() - 1024),
        disk_gb=int(disk_gb),
    )
    db.add(node)
    if db.scalar(select(IpPool.id).where(IpPool.region_id == region.id)) is None:
        db.add(IpPool(name=LOCAL_POOL, region_id=region.id, cidr=LOCAL_CIDR, gateway="10.240.0.1"))
    db.flush()
    return (
        f"compute node 'local' registered ({node.vcpus} vCPUs, {node.memory_mb} MB, "
        f"{'KVM' if virt_type == 'kvm' else 'software emulation: KVM is not usable here'})"
    )
