"""The libvirt driver: QEMU/KVM hypervisors, local (``qemu:///system``) or remote
(``qemu+ssh://…``, ``qemu+tls://…``). One connection per node, reopened when it drops.

Disks live in a libvirt storage pool of type ``dir`` on the node, so volumes are created and
deleted through libvirt and work the same over remote connections. Each instance gets a qcow2
volume: a copy-on-write overlay on the image's base disk, or a blank disk of the plan's size for
kernel-booted images. The serial console is a pty (what ``openConsole`` attaches to, see
``libvirt_console``) whose output is also logged to a file beside the disks (the boot log).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import libvirt

from vmcloud.compute import cloud_init
from vmcloud.compute.drivers.base import (
    ComputeDriver,
    Console,
    ConsoleBusyError,
    ConsoleUnavailableError,
    DriverError,
    VMSpec,
    VMState,
    VMStats,
)
from vmcloud.compute.drivers.libvirt_console import LibvirtConsole, open_connection
from vmcloud.core.clock import utcnow
from vmcloud.core.logging import get_logger

log = get_logger(__name__)
PREFIX = "vmcloud-"
CONSOLE_TAIL = 64 * 1024  # bytes of the boot log ``console_output`` returns (its end)
T = TypeVar("T")

_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: VMState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: VMState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: VMState.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VMState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: VMState.RUNNING,  # shutting down: still up
    libvirt.VIR_DOMAIN_SHUTOFF: VMState.STOPPED,
    libvirt.VIR_DOMAIN_CRASHED: VMState.CRASHED,
    libvirt.VIR_DOMAIN_NOSTATE: VMState.STOPPED,
}


def _silence_libvirt(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised and logged instead."""


libvirt.registerErrorHandler(_silence_libvirt, None)


def is_local(uri: str) -> bool:
    """Whether ``uri`` names a daemon on this machine (its files are ours to read and remove):
    no host, and no transport but a local socket — ``qemu:///system``, or another user's
    session daemon at ``qemu+unix:///session?socket=…``."""
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2]
    return not parts.netloc and transport in ("", "unix")


class LibvirtDriver(ComputeDriver):
    def __init__(
        self,
        uri: str,
        *,
        storage_dir: str,
        pool_name: str = "vmcloud",
        virt_type: str = "qemu",
        network: str = "user",
        bridge: str | None = None,
        namespace: str = "",
    ) -> None:
        """``storage_dir`` is a path on the node; ``network`` is ``user`` (QEMU's own NAT, for
        development nodes) or ``bridge`` (the instance's address on ``bridge``)."""
        if virt_type not in ("qemu", "kvm"):
            raise ValueError("virt_type is 'qemu' or 'kvm'")
        if network == "bridge" and not bridge:
            raise ValueError("a bridge network needs the bridge's name")
        self.uri = uri
        self.storage_dir = storage_dir.rstrip("/")
        self.pool_name = pool_name
        self.virt_type = virt_type
        self.network = network
        self.bridge = bridge
        # Domains are named vmcloud-<namespace>-<instance id>: an installation sees (and its
        # reconciler destroys) only its own, even on a hypervisor it shares.
        self.prefix = f"{PREFIX}{namespace}-" if namespace else PREFIX
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.RLock()

    # -- connection ------------------------------------------------------------------------

    def _connection(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is not None:
                try:
                    if self._conn.isAlive():
                        return self._conn
                except libvirt.libvirtError:
                    pass
                log.warning("libvirt.reconnect", uri=self.uri)
                self._close_quietly()
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise DriverError(
                    f"cannot reach the hypervisor: {exc.get_error_message()}"
                ) from exc
            return self._conn

    def _call(self, what: Callable[[libvirt.virConnect], T]) -> T:
        """Run ``what`` on the connection, once more on a fresh one if the first drops."""
        try:
            return what(self._connection())
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC):
                self._close_quietly()
                return what(self._connection())
            raise

    def _close_quietly(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    # -- naming ----------------------------------------------------------------------------

    def _name(self, instance_id: uuid.UUID) -> str:
        return f"{self.prefix}{instance_id}"

    def _volume_name(self, instance_id: uuid.UUID) -> str:
        return f"{instance_id}.qcow2"

    def _console_name(self, instance_id: uuid.UUID) -> str:
        return f"{instance_id}.console.log"

    def _console_path(self, instance_id: uuid.UUID) -> str:
        return f"{self.storage_dir}/{self._console_name(instance_id)}"

    def _domain(self, instance_id: uuid.UUID) -> libvirt.virDomain | None:
        def lookup(conn: libvirt.virConnect) -> libvirt.virDomain | None:
            try:
                return conn.lookupByName(self._name(instance_id))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise

        return self._call(lookup)

    def _require(self, instance_id: uuid.UUID) -> libvirt.virDomain:
        domain = self._domain(instance_id)
        if domain is None:
            raise DriverError(f"the VM of instance {instance_id} does not exist on the node")
        return domain

    # -- storage ---------------------------------------------------------------------------

    def _pool(self) -> libvirt.virStoragePool:
        def ensure(conn: libvirt.virConnect) -> libvirt.virStoragePool:
            try:
                pool = conn.storagePoolLookupByName(self.pool_name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                    raise
                pool_el = ET.Element("pool", type="dir")
                ET.SubElement(pool_el, "name").text = self.pool_name
                target = ET.SubElement(pool_el, "target")
                ET.SubElement(target, "path").text = self.storage_dir
                pool = conn.storagePoolDefineXML(ET.tostring(pool_el, encoding="unicode"), 0)
                pool.build(0)
                pool.setAutostart(1)
            if not pool.isActive():
                pool.create(0)
            return pool

        return self._call(ensure)

    def _create_volume(self, spec: VMSpec) -> libvirt.virStorageVol:
        pool = self._pool()
        pool.refresh(0)
        volume = ET.Element("volume", type="file")
        ET.SubElement(volume, "name").text = self._volume_name(spec.instance_id)
        ET.SubElement(volume, "capacity", unit="G").text = str(spec.disk_gb)
        target = ET.SubElement(volume, "target")
        ET.SubElement(target, "format", type="qcow2")
        ET.SubElement(ET.SubElement(target, "permissions"), "mode").text = "0660"
        if spec.boot.kind == "disk":
            if not spec.boot.disk_path:
                raise DriverError("the image has no base disk on this node")
            backing = ET.SubElement(volume, "backingStore")
            ET.SubElement(backing, "path").text = spec.boot.disk_path
            ET.SubElement(backing, "format", type=spec.boot.disk_format)
        return pool.createXML(ET.tostring(volume, encoding="unicode"), 0)

    def _seed_name(self, instance_id: uuid.UUID) -> str:
        return f"{instance_id}-seed.iso"

    def _create_seed(self, spec: VMSpec) -> libvirt.virStorageVol:
        """Upload a NoCloud seed through libvirt, so it works on remote nodes too."""
        data = cloud_init.seed_iso(
            instance_id=spec.instance_id,
            hostname=spec.hostname,
            ssh_keys=spec.ssh_keys,
            user_data=spec.user_data,
        )
        pool = self._pool()
        volume = ET.Element("volume", type="file")
        ET.SubElement(volume, "name").text = self._seed_name(spec.instance_id)
        ET.SubElement(volume, "capacity", unit="bytes").text = str(len(data))
        target = ET.SubElement(volume, "target")
        ET.SubElement(target, "format", type="raw")
        vol = pool.createXML(ET.tostring(volume, encoding="unicode"), 0)
        stream = self._connection().newStream(0)
        vol.upload(stream, 0, len(data), 0)
        stream.send(data)
        stream.finish()
        return vol

    def _delete_volume(self, instance_id: uuid.UUID) -> None:
        pool = self._pool()
        pool.refresh(0)
        for name in (self._volume_name(instance_id), self._seed_name(instance_id)):
            try:
                pool.storageVolLookupByName(name).delete(0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise

    # -- domain XML ------------------------------------------------------------------------

    def _domain_xml(self, spec: VMSpec, disk_path: str, seed_path: str | None = None) -> str:
        domain = ET.Element("domain", type=self.virt_type)
        ET.SubElement(domain, "name").text = self._name(spec.instance_id)
        ET.SubElement(domain, "uuid").text = str(spec.instance_id)
        ET.SubElement(domain, "memory", unit="MiB").text = str(spec.memory_mb)
        ET.SubElement(domain, "vcpu").text = str(spec.vcpus)
        os_el = ET.SubElement(domain, "os")
        ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
        if spec.boot.kind == "kernel":
            if not (spec.boot.kernel and spec.boot.initrd):
                raise DriverError("the image has no kernel and initrd on this node")
            ET.SubElement(os_el, "kernel").text = spec.boot.kernel
            ET.SubElement(os_el, "initrd").text = spec.boot.initrd
            ET.SubElement(os_el, "cmdline").text = self._cmdline(spec)
        else:
            ET.SubElement(os_el, "boot", dev="hd")
        features = ET.SubElement(domain, "features")
        ET.SubElement(features, "acpi")  # the power button a graceful stop presses
        ET.SubElement(features, "apic")
        ET.SubElement(domain, "on_poweroff").text = "destroy"
        ET.SubElement(domain, "on_reboot").text = "restart"
        ET.SubElement(domain, "on_crash").text = "destroy"
        devices = ET.SubElement(domain, "devices")
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type="qcow2")
        ET.SubElement(disk, "source", file=disk_path)
        ET.SubElement(disk, "target", dev="vda", bus="virtio")
        if seed_path:
            seed = ET.SubElement(devices, "disk", type="file", device="cdrom")
            ET.SubElement(seed, "driver", name="qemu", type="raw")
            ET.SubElement(seed, "source", file=seed_path)
            ET.SubElement(seed, "target", dev="sda", bus="sata")
            ET.SubElement(seed, "readonly")
        if self.network == "bridge":
            interface = ET.SubElement(devices, "interface", type="bridge")
            ET.SubElement(interface, "source", bridge=str(self.bridge))
        else:
            interface = ET.SubElement(devices, "interface", type="user")
        ET.SubElement(interface, "model", type="virtio")
        self._add_console(devices, spec.instance_id)
        ET.SubElement(devices, "memballoon", model="virtio")
        return ET.tostring(domain, encoding="unicode")

    def _cmdline(self, spec: VMSpec) -> str:
        words = [spec.boot.cmdline, f"vmcloud.hostname={spec.hostname}"]
        net = spec.network
        if self.network == "user":
            # QEMU's user-mode NAT has fixed addresses; the instance's own address is recorded
            # by the platform but only a bridged node can give it to the guest.
            words += ["vmcloud.ip=10.0.2.15/24", "vmcloud.gw=10.0.2.2"]
        elif net.address and net.prefix is not None:
            words.append(f"vmcloud.ip={net.address}/{net.prefix}")
            if net.gateway:
                words.append(f"vmcloud.gw={net.gateway}")
        return " ".join(word for word in words if word)

    # -- the contract ----------------------------------------------------------------------

    def create(self, spec: VMSpec) -> None:
        if self._domain(spec.instance_id) is not None:
            raise DriverError(f"a VM for instance {spec.instance_id} already exists")
        made_volume = False
        try:
            volume = self._create_volume(spec)
            made_volume = True
            seed_path = None
            if spec.boot.kind == "disk" and spec.boot.cloud_init:
                seed_path = self._create_seed(spec).path()
            xml = self._domain_xml(spec, volume.path(), seed_path)
            domain = self._call(lambda conn: conn.defineXML(xml))
            domain.create()
        except (libvirt.libvirtError, DriverError) as exc:
            self._cleanup_after_failed_create(spec.instance_id, made_volume)
            message = exc.get_error_message() if isinstance(exc, libvirt.libvirtError) else str(exc)
            raise DriverError(f"could not create the VM: {message}") from exc

    def _cleanup_after_failed_create(self, instance_id: uuid.UUID, made_volume: bool) -> None:
        try:
            self._undefine(instance_id)
            if made_volume:
                self._delete_volume(instance_id)
            self._delete_console_log(instance_id)
        except (libvirt.libvirtError, DriverError) as exc:  # the original error matters more
            log.warning("libvirt.cleanup_failed", instance_id=str(instance_id), error=str(exc))

    def start(self, instance_id: uuid.UUID) -> None:
        domain = self._require(instance_id)
        if not domain.isActive():
            domain = self._with_pty_console(domain, instance_id)
            self._wrap(domain.create)

    def _with_pty_console(
        self, domain: libvirt.virDomain, instance_id: uuid.UUID
    ) -> libvirt.virDomain:
        """A stopped VM defined before the interactive console (a serial port that only wrote
        to a file, which ``openConsole`` cannot attach to) is redefined with the pty and its
        log, as :meth:`_domain_xml` makes them, before it starts: the boot log stays where
        it was and the VM gains its console. Any other VM is returned as it is."""
        try:
            xml = ET.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # noqa: S314 - libvirt's own XML
            devices = xml.find("devices")
            serial = devices.find("serial") if devices is not None else None
            if devices is None or serial is None or serial.get("type") != "file":
                return domain
            for old in devices.findall("serial") + devices.findall("console"):
                devices.remove(old)
            self._add_console(devices, instance_id)
            redefined = ET.tostring(xml, encoding="unicode")
            upgraded = self._call(lambda conn: conn.defineXML(redefined))
        except libvirt.libvirtError as exc:
            raise DriverError(exc.get_error_message()) from exc
        log.info("libvirt.console_upgraded", instance_id=str(instance_id))
        return upgraded

    def _add_console(self, devices: ET.Element, instance_id: uuid.UUID) -> None:
        """The serial port as a pty (an interactive console) whose output is also logged to
        the boot-log file beside the disks."""
        serial = ET.SubElement(devices, "serial", type="pty")
        ET.SubElement(serial, "log", file=self._console_path(instance_id), append="on")
        ET.SubElement(serial, "target", port="0")
        console = ET.SubElement(devices, "console", type="pty")
        ET.SubElement(console, "target", type="serial", port="0")

    def stop(self, instance_id: uuid.UUID, timeout: float = 60) -> None:
        domain = self._require(instance_id)
        if not domain.isActive():
            return
        # Press the power button every few seconds: a guest still booting (no ACPI listener
        # yet) misses the first press. Past the deadline, pull the plug.
        deadline = time.monotonic() + timeout
        next_press = 0.0
        while time.monotonic() < deadline:
            if not domain.isActive():
                return
            if time.monotonic() >= next_press:
                with contextlib.suppress(libvirt.libvirtError):
                    domain.shutdown()
                next_press = time.monotonic() + 2
            time.sleep(0.2)
        try:
            domain.destroy()
        except libvirt.libvirtError as exc:
            if domain.isActive():
                raise DriverError(f"could not stop the VM: {exc.get_error_message()}") from exc

    def reboot(self, instance_id: uuid.UUID) -> None:
        domain = self._require(instance_id)
        if not domain.isActive():
            raise DriverError("the VM is not running")
        # A reset is what a reboot of a hung or ACPI-less guest needs; it is also immediate.
        self._wrap(lambda: domain.reset(0))

    def destroy(self, instance_id: uuid.UUID) -> None:
        try:
            self._undefine(instance_id)
            self._delete_volume(instance_id)
            self._delete_console_log(instance_id)
        except libvirt.libvirtError as exc:
            raise DriverError(f"could not destroy the VM: {exc.get_error_message()}") from exc

    def _undefine(self, instance_id: uuid.UUID) -> None:
        domain = self._domain(instance_id)
        if domain is None:
            return
        if domain.isActive():
            domain.destroy()
        domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)

    def _delete_console_log(self, instance_id: uuid.UUID) -> None:
        """Remove the boot log: a file here when the node is this machine and the file is
        visible, else the volume it is in the node's storage pool."""
        local = self._local_console_log(instance_id)
        if local is not None:
            local.unlink(missing_ok=True)
            return
        volume = self._console_volume(instance_id)
        if volume is not None:
            volume.delete(0)

    def _local_console_log(self, instance_id: uuid.UUID) -> Path | None:
        path = Path(self._console_path(instance_id))
        return path if is_local(self.uri) and path.is_file() else None

    def _console_volume(self, instance_id: uuid.UUID) -> libvirt.virStorageVol | None:
        """The boot log as a volume of the storage pool (its directory holds the file)."""
        pool = self._pool()
        pool.refresh(0)
        try:
            return pool.storageVolLookupByName(self._console_name(instance_id))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
            return None

    def state(self, instance_id: uuid.UUID) -> VMState:
        domain = self._domain(instance_id)
        if domain is None:
            return VMState.MISSING
        code, _reason = domain.state()
        return _STATES.get(code, VMState.STOPPED)

    def stats(self, instance_id: uuid.UUID) -> VMStats:
        domain = self._require(instance_id)
        try:
            info = domain.info()  # state, max memory KiB, memory KiB, vcpus, cpu time ns
            total_mb = info[1] // 1024
            used_mb = total_mb
            if domain.isActive():
                memory = domain.memoryStats()
                if "available" in memory and "unused" in memory:
                    used_mb = (memory["available"] - memory["unused"]) // 1024
                elif "rss" in memory:
                    used_mb = min(total_mb, memory["rss"] // 1024)
                _rd_req, rd_bytes, _wr_req, wr_bytes, _errs = domain.blockStats("vda")
            else:
                used_mb, rd_bytes, wr_bytes = 0, 0, 0
            rx, tx = self._interface_bytes(domain)
        except libvirt.libvirtError as exc:
            raise DriverError(
                f"could not read the VM's counters: {exc.get_error_message()}"
            ) from exc
        return VMStats(
            cpu_time_ns=int(info[4]),
            memory_total_mb=int(total_mb),
            memory_used_mb=int(max(0, used_mb)),
            disk_read_bytes=int(rd_bytes),
            disk_write_bytes=int(wr_bytes),
            net_rx_bytes=rx,
            net_tx_bytes=tx,
            collected_at=utcnow(),
        )

    def _interface_bytes(self, domain: libvirt.virDomain) -> tuple[int, int]:
        """Bytes received and sent. User-mode interfaces have no host device to count on."""
        if not domain.isActive():
            return 0, 0
        root = ET.fromstring(domain.XMLDesc(0))  # noqa: S314 - libvirt's own XML
        rx = tx = 0
        for target in root.findall("./devices/interface/target"):
            device = target.get("dev")
            if device:
                stats = domain.interfaceStats(device)
                rx, tx = rx + int(stats[0]), tx + int(stats[4])
        return rx, tx

    def list(self) -> list[uuid.UUID]:
        found = []
        for domain in self._call(lambda conn: conn.listAllDomains(0)):
            name = domain.name()
            if name.startswith(self.prefix):
                try:
                    found.append(uuid.UUID(name.removeprefix(self.prefix)))
                except ValueError:
                    continue
        return found

    def console_output(self, instance_id: uuid.UUID) -> str:
        """The last ``CONSOLE_TAIL`` bytes of the boot log: read here when the file is on this
        machine, else downloaded from the node's storage pool."""
        local = self._local_console_log(instance_id)
        try:
            if local is not None:
                with local.open("rb") as file:
                    file.seek(max(0, local.stat().st_size - CONSOLE_TAIL))
                    data = file.read(CONSOLE_TAIL)
            else:
                data = self._download_console_log(instance_id)
        except (FileNotFoundError, PermissionError):
            return ""
        except libvirt.libvirtError as exc:
            raise DriverError(f"could not read the boot log: {exc.get_error_message()}") from exc
        return data.decode(errors="replace")

    def _download_console_log(self, instance_id: uuid.UUID) -> bytes:
        volume = self._console_volume(instance_id)
        if volume is None:
            return b""
        size = int(volume.info()[1])  # type, capacity (the file's size), allocation
        offset = max(0, size - CONSOLE_TAIL)
        if size <= offset:
            return b""
        stream = self._connection().newStream(0)
        chunks: list[bytes] = []
        try:
            volume.download(stream, offset, size - offset, 0)
            while data := stream.recv(CONSOLE_TAIL):
                if not isinstance(data, bytes):
                    break
                chunks.append(data)
            stream.finish()
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            raise
        return b"".join(chunks)

    def open_console(self, instance_id: uuid.UUID, loop: asyncio.AbstractEventLoop) -> Console:
        conn = open_connection(self.uri)
        try:
            try:
                domain = conn.lookupByName(self._name(instance_id))
                running = bool(domain.isActive())
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise DriverError(exc.get_error_message()) from exc
                running = False
            if not running:
                raise ConsoleUnavailableError("the VM is not running")
            try:
                stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            except libvirt.libvirtError as exc:
                raise DriverError(f"no console: {exc.get_error_message()}") from exc
            try:
                # No VIR_DOMAIN_CONSOLE_FORCE: a second client is refused, whichever process
                # holds the first.
                domain.openConsole(None, stream, 0)
                return LibvirtConsole(conn, stream, loop)
            except libvirt.libvirtError as exc:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
                code = exc.get_error_code()
                if code == libvirt.VIR_ERR_OPERATION_FAILED:
                    raise ConsoleBusyError("another client holds the console") from exc
                if code in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN):
                    # It stopped (or went) since ``isActive``.
                    raise ConsoleUnavailableError("the VM is not running") from exc
                raise DriverError(f"no console: {exc.get_error_message()}") from exc
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
            raise

    def send_ctrl_alt_del(self, instance_id: uuid.UUID) -> None:
        domain = self._require(instance_id)
        if not domain.isActive():
            raise DriverError("the VM is not running")
        # Linux key codes: KEY_LEFTCTRL, KEY_LEFTALT, KEY_DELETE, held together.
        self._wrap(lambda: domain.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 0, [29, 56, 111], 3, 0))

    @staticmethod
    def _wrap(action: Callable[[], object]) -> None:
        try:
            action()
        except libvirt.libvirtError as exc:
            raise DriverError(exc.get_error_message()) from exc
