"""An in-memory driver for unit tests, with failure-mode variants. Never chosen silently: only
a node whose driver is ``fake`` uses it, and only tests create such nodes (a real install
refuses them). The node's URI picks the variant: ``fake://name?variant=fails-on-create``."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

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
from vmcloud.compute.tiny_image import BOOT_MARKER, READY_MARKER
from vmcloud.core.clock import utcnow


@dataclass
class _FakeVM:
    spec: VMSpec
    state: VMState
    boots: int = 1
    console: str = ""
    attached: FakeConsole | None = None
    ctrl_alt_del: int = 0


class FakeConsole(Console):
    """A serial console that echoes what is typed (a terminal in cooked mode would), Enter as a
    new line. Ends when closed or when its VM stops."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        release: Callable[[], None],
        log: Callable[[str], None],
    ) -> None:
        self._loop = loop
        self._log = log
        self._output: asyncio.Queue[bytes] = asyncio.Queue()
        self._release = release
        self.ended = False

    async def read(self) -> bytes:
        if self.ended and self._output.empty():
            return b""
        return await self._output.get()

    async def write(self, data: bytes) -> None:
        if self.ended:
            raise DriverError("the console has ended")
        echo = data.replace(b"\r", b"\r\n")
        self._log(echo.decode(errors="replace"))
        self._output.put_nowait(echo)

    def hang_up(self) -> None:
        """From any thread: the VM went away."""
        self._loop.call_soon_threadsafe(self._end)

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self._release()
            self._output.put_nowait(b"")

    async def close(self) -> None:
        self._end()


class FakeDriver(ComputeDriver):
    def __init__(self) -> None:
        self.vms: dict[uuid.UUID, _FakeVM] = {}
        self._lock = threading.Lock()
        self.reachable = True  # False: the node stops answering (its listing fails)

    def _get(self, instance_id: uuid.UUID) -> _FakeVM:
        vm = self.vms.get(instance_id)
        if vm is None:
            raise DriverError(f"no such VM {instance_id}")
        return vm

    def _boot_console(self, spec: VMSpec) -> str:
        address = spec.network.address or ""
        return f"{BOOT_MARKER} fake\n{READY_MARKER} hostname={spec.hostname} address={address}\n"

    def create(self, spec: VMSpec) -> None:
        with self._lock:
            if spec.instance_id in self.vms:
                raise DriverError(f"VM {spec.instance_id} already exists")
            self.vms[spec.instance_id] = _FakeVM(
                spec=spec, state=VMState.RUNNING, console=self._boot_console(spec)
            )

    def start(self, instance_id: uuid.UUID) -> None:
        vm = self._get(instance_id)
        if vm.state != VMState.RUNNING:
            vm.state = VMState.RUNNING
            vm.boots += 1
            vm.console += self._boot_console(vm.spec)

    def stop(self, instance_id: uuid.UUID, timeout: float = 60) -> None:
        vm = self._get(instance_id)
        vm.state = VMState.STOPPED
        if vm.attached is not None:
            vm.attached.hang_up()

    def reboot(self, instance_id: uuid.UUID) -> None:
        vm = self._get(instance_id)
        if vm.state != VMState.RUNNING:
            raise DriverError("the VM is not running")
        vm.boots += 1
        vm.console += self._boot_console(vm.spec)

    def destroy(self, instance_id: uuid.UUID) -> None:
        with self._lock:
            vm = self.vms.pop(instance_id, None)
        if vm is not None and vm.attached is not None:
            vm.attached.hang_up()

    def state(self, instance_id: uuid.UUID) -> VMState:
        vm = self.vms.get(instance_id)
        return VMState.MISSING if vm is None else vm.state

    def stats(self, instance_id: uuid.UUID) -> VMStats:
        vm = self._get(instance_id)
        return VMStats(
            cpu_time_ns=vm.boots * 1_000_000_000,
            memory_total_mb=vm.spec.memory_mb,
            memory_used_mb=vm.spec.memory_mb // 4,
            disk_read_bytes=4096 * vm.boots,
            disk_write_bytes=1024 * vm.boots,
            net_rx_bytes=0,
            net_tx_bytes=0,
            collected_at=utcnow(),
        )

    def list(self) -> list[uuid.UUID]:
        if not self.reachable:
            raise DriverError("cannot connect to the hypervisor")
        return list(self.vms)

    def console_output(self, instance_id: uuid.UUID) -> str:
        vm = self.vms.get(instance_id)
        return "" if vm is None else vm.console

    def open_console(self, instance_id: uuid.UUID, loop: asyncio.AbstractEventLoop) -> Console:
        with self._lock:
            vm = self.vms.get(instance_id)
            if vm is None or vm.state != VMState.RUNNING:
                raise ConsoleUnavailableError("the VM is not running")
            if vm.attached is not None:
                raise ConsoleBusyError("another client holds the console")

            console = FakeConsole(
                loop, lambda: self._detach(vm, console), lambda text: self._log(vm, text)
            )
            vm.attached = console
            return console

    def _log(self, vm: _FakeVM, text: str) -> None:
        vm.console += text

    def _detach(self, vm: _FakeVM, console: FakeConsole) -> None:
        with self._lock:
            if vm.attached is console:
                vm.attached = None

    def send_ctrl_alt_del(self, instance_id: uuid.UUID) -> None:
        vm = self._get(instance_id)
        if vm.state != VMState.RUNNING:
            raise DriverError("the VM is not running")
        vm.ctrl_alt_del += 1


class FailsOnCreateDriver(FakeDriver):
    """The hypervisor refuses every new VM (out of disk, broken image)."""

    def create(self, spec: VMSpec) -> None:
        raise DriverError("the hypervisor refused to create the VM")


class DiesWhileBootingDriver(FakeDriver):
    """VMs are created but crash before they finish booting."""

    def create(self, spec: VMSpec) -> None:
        super().create(spec)
        vm = self.vms[spec.instance_id]
        vm.state = VMState.CRASHED
        vm.console = "Kernel panic - not syncing\n"


class LosesVMsDriver(FakeDriver):
    """VMs vanish behind the platform's back (a node reinstalled, a domain undefined by hand)."""

    def lose(self, instance_id: uuid.UUID) -> None:
        self.vms.pop(instance_id, None)


VARIANTS: dict[str, type[FakeDriver]] = {
    "": FakeDriver,
    "fails-on-create": FailsOnCreateDriver,
    "dies-while-booting": DiesWhileBootingDriver,
    "loses-vms": LosesVMsDriver,
}
# One in-memory hypervisor per URI for the life of the process: its VMs outlive the driver
# cache (``nodes.forget_drivers``) as a real hypervisor's do.
_hypervisors: dict[str, FakeDriver] = {}
_hypervisors_lock = threading.Lock()


def for_uri(uri: str) -> FakeDriver:
    """The fake hypervisor at ``uri``, of the variant its ``?variant=`` names."""
    variant = parse_qs(urlsplit(uri).query).get("variant", [""])[0]
    if variant not in VARIANTS:
        raise DriverError(f"no fake driver variant {variant!r}")
    with _hypervisors_lock:
        return _hypervisors.setdefault(uri, VARIANTS[variant]())
