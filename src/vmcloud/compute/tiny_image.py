"""The tiny guest: a bootable kernel + initrd built from Debian's ``linux-image-cloud-amd64``
and ``busybox-static``, so any machine of this kind can boot real VMs in seconds.

The guest prints a boot marker on its serial console, applies the hostname and address given on
its kernel command line (``vmcloud.hostname=``, ``vmcloud.ip=ADDR/PREFIX``, ``vmcloud.gw=``),
prints a ready marker, and runs a shell on the console.
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

BOOT_MARKER = "VMCLOUD-BOOT-OK"
READY_MARKER = "VMCLOUD-READY"
BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
# What the guest needs from the cloud kernel's modules, in load order after dependencies.
WANTED_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_balloon",
    "virtio_console",
    # The ACPI power button, so a graceful stop really is graceful (and quick).
    "button",
    "evdev",
)

INIT_SCRIPT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for module in $(cat /etc/modules.order); do
  insmod "/lib/modules/$module" 2>/dev/null
done
# -d (stay in the foreground, log to stderr): daemonised, busybox acpid misses the event.
acpid -d -c /etc/acpi >/dev/null 2>&1 &
echo "{BOOT_MARKER} $(uname -r)"
for word in $(cat /proc/cmdline); do
  case "$word" in
    vmcloud.hostname=*) HOSTNAME="${{word#vmcloud.hostname=}}" ;;
    vmcloud.ip=*) ADDRESS="${{word#vmcloud.ip=}}" ;;
    vmcloud.gw=*) GATEWAY="${{word#vmcloud.gw=}}" ;;
  esac
done
[ -n "$HOSTNAME" ] && hostname "$HOSTNAME"
ip link set lo up
IFACE=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
if [ -n "$IFACE" ]; then
  ip link set "$IFACE" up
  [ -n "$ADDRESS" ] && ip addr add "$ADDRESS" dev "$IFACE"
  [ -n "$GATEWAY" ] && ip route add default via "$GATEWAY"
fi
echo "{READY_MARKER} hostname=$(hostname) address=$ADDRESS iface=$IFACE"
while true; do
  setsid cttyhack sh
done
"""


class TinyImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class TinyImage:
    kernel: Path
    initrd: Path
    cmdline: str = "console=ttyS0 quiet panic=-1"


def _find_kernel() -> tuple[Path, str]:
    kernels = sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"))
    if not kernels:
        raise TinyImageError(
            "no Debian cloud kernel in /boot; install linux-image-cloud-amd64 (./test and ./run do)"
        )
    kernel = Path(kernels[-1])
    return kernel, kernel.name.removeprefix("vmlinuz-")


def _find_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if candidate.exists():
            return candidate
    raise TinyImageError("busybox not found; install busybox-static (./test and ./run do)")


def _module_order(release: str) -> list[str]:
    """Wanted modules with their dependencies, dependencies first (paths relative to the
    release's module directory)."""
    base = Path("/lib/modules") / release
    deps: dict[str, list[str]] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        module, _, requires = line.partition(":")
        deps[module] = requires.split()
    by_name = {Path(path).name.split(".ko")[0]: path for path in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        for dependency in deps.get(path, []):
            visit(dependency)
        if path not in order:
            order.append(path)

    for name in WANTED_MODULES:
        if name in by_name:
            visit(by_name[name])
    return order


class _Cpio:
    """A minimal ``newc`` cpio writer (what the kernel unpacks as an initramfs)."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.inode = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        encoded = name.encode() + b"\0"
        header = (
            "070701"
            + "".join(
                f"{value:08x}"
                for value in (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
            )
        ).encode()
        self.inode += 1
        self.buffer.write(header + encoded)
        self.buffer.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        self.buffer.write(data)
        self.buffer.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buffer.getvalue()


def build(target: Path) -> TinyImage:
    """Build (or rebuild) the tiny image into ``target``; returns its files."""
    kernel, release = _find_kernel()
    busybox = _find_busybox()
    modules = _module_order(release)
    archive = _Cpio()
    for directory in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "run", "lib"):
        archive.directory(directory)
    archive.directory("lib/modules")
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    archive.file("init", INIT_SCRIPT.encode(), 0o755)
    flat = []
    for module in modules:
        name = Path(module).name
        archive.file(f"lib/modules/{name}", (Path("/lib/modules") / release / module).read_bytes())
        flat.append(name)
    archive.file("etc/modules.order", ("\n".join(flat) + "\n").encode())
    archive.file("etc/hostname", b"tiny\n")
    archive.directory("etc/acpi")
    archive.directory("etc/acpi/PWRF")
    archive.file("etc/acpi/PWRF/00000080", b"#!/bin/sh\nsync\npoweroff -f\n", 0o755)

    target.mkdir(parents=True, exist_ok=True)
    os.chmod(target, 0o755)  # noqa: S103 - QEMU, running as its own user, reads these
    image = TinyImage(kernel=target / "vmlinuz", initrd=target / "initrd.gz")
    # Copied, world-readable: /boot's kernel is root-only and QEMU runs as its own user.
    shutil.copyfile(kernel, image.kernel)
    image.initrd.write_bytes(gzip.compress(archive.finish(), compresslevel=6))
    for built in (image.kernel, image.initrd):
        os.chmod(built, 0o644)
    return image
