"""Cloud images: the NoCloud seed's contents, and a disk-booted VM that carries one."""

from __future__ import annotations

import io
import json
import subprocess
import uuid
from pathlib import Path

import pycdlib

from vmcloud.compute.cloud_init import seed_iso
from vmcloud.compute.drivers.base import BootSource, VMSpec, VMState
from vmcloud.compute.drivers.libvirt import LibvirtDriver


def _read(iso_bytes: bytes) -> tuple[str, dict[str, str]]:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(iso_bytes))
    files = {}
    for name in ("meta-data", "user-data"):
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
        files[name] = out.getvalue().decode()
    label = iso.pvd.volume_identifier.decode().strip()
    iso.close()
    return label, files


def test_seed_carries_hostname_and_ssh_keys() -> None:
    instance_id = uuid.uuid4()
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3 me@laptop"
    label, files = _read(seed_iso(instance_id=instance_id, hostname="web-1", ssh_keys=(key,)))
    assert label == "cidata"  # what cloud-init's NoCloud source looks for
    assert json.loads(files["meta-data"]) == {
        "instance-id": str(instance_id),
        "local-hostname": "web-1",
        "public-keys": [key],
    }
    assert files["user-data"].startswith("#cloud-config\n")
    assert json.loads(files["user-data"].split("\n", 1)[1]) == {"ssh_authorized_keys": [key]}


def test_customer_user_data_is_passed_untouched_and_keys_still_arrive() -> None:
    script = "#!/bin/sh\necho hello > /tmp/hello\n"
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3 me@laptop"
    _, files = _read(
        seed_iso(instance_id=uuid.uuid4(), hostname="h", ssh_keys=(key,), user_data=script)
    )
    assert files["user-data"] == script
    assert json.loads(files["meta-data"])["public-keys"] == [key]


def test_a_disk_image_vm_gets_an_overlay_and_a_seed_both_removed(
    libvirt_node: LibvirtDriver, tmp_path: Path
) -> None:
    base = Path(libvirt_node.storage_dir).parent / f"base-{uuid.uuid4().hex[:6]}.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", str(base), "1G"], check=True, capture_output=True
    )
    base.chmod(0o644)
    try:
        spec = VMSpec(
            instance_id=uuid.uuid4(),
            hostname="cloudy",
            vcpus=1,
            memory_mb=128,
            disk_gb=2,
            boot=BootSource(kind="disk", disk_path=str(base), cloud_init=True),
            ssh_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3 me@laptop",),
        )
        libvirt_node.create(spec)
        storage = Path(libvirt_node.storage_dir)
        overlay = storage / f"{spec.instance_id}.qcow2"
        seed = storage / f"{spec.instance_id}-seed.iso"
        try:
            assert libvirt_node.state(spec.instance_id) == VMState.RUNNING
            info = json.loads(
                subprocess.run(
                    ["qemu-img", "info", "--output=json", "-U", str(overlay)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            assert info["backing-filename"] == str(base)  # copy-on-write on the image
            assert info["virtual-size"] == 2 * 1024**3
            _, files = _read(seed.read_bytes())
            assert "cloudy" in files["meta-data"]
        finally:
            libvirt_node.destroy(spec.instance_id)
        assert not overlay.exists()
        assert not seed.exists()
    finally:
        base.unlink(missing_ok=True)
