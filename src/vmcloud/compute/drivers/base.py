"""The contract every hypervisor driver keeps (shaped like OpenStack Nova's ``ComputeDriver``).

Rules that hold for every implementation, checked by one conformance suite
(``tests/compute/test_driver_conformance.py``) against each of them:

- VMs are named by the platform's instance id. Hypervisor ids, domain names and paths never
  leave the driver.
- ``create`` builds the VM's disk, defines it and boots it. If any step fails it removes what it
  made before raising :class:`DriverError`: a failed create leaves nothing behind.
- ``destroy`` of a VM that does not exist succeeds; otherwise it powers the VM off, removes its
  definition and deletes its disk and console log.
- ``stop`` asks the guest to shut down and, after ``timeout`` seconds, pulls the plug.
- ``state`` of an unknown VM is :attr:`VMState.MISSING`, never an error.
- ``list`` returns the ids of the platform's VMs on the node and nothing else.
- ``open_console`` attaches to a running VM's serial console; while one client holds it, the
  next is refused with :class:`ConsoleBusyError` (by the hypervisor, so across processes).
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime


class DriverError(RuntimeError):
    """The hypervisor refused or failed; the message is safe to record on the instance."""


class ConsoleBusyError(DriverError):
    """Another client holds the VM's serial console."""


class ConsoleUnavailableError(DriverError):
    """The VM is not running (or gone): there is no console to attach to."""


class Console(ABC):
    """An attached serial console: bytes from the guest's serial port, bytes to it. Its methods
    run in the event loop it was opened for; ``close`` is idempotent and always releases the
    hypervisor's stream, so the next client can attach."""

    @abstractmethod
    async def read(self) -> bytes:
        """The next bytes the guest wrote; ``b""`` once the console has ended (the VM stopped,
        the connection dropped, or ``close`` was called)."""

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Queue ``data`` for the guest. Raises :class:`DriverError` when the console has
        ended or its input buffer is full."""

    @abstractmethod
    async def close(self) -> None:
        """Detach and release the stream."""


class VMState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    CRASHED = "crashed"
    MISSING = "missing"


@dataclass(frozen=True)
class BootSource:
    """How to boot: a kernel and initrd directly, or a disk image as the base of a
    copy-on-write disk."""

    kind: str  # "kernel" | "disk"
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str = ""
    disk_path: str | None = None
    disk_format: str = "qcow2"
    cloud_init: bool = False  # attach a NoCloud seed (hostname, SSH keys, user data)


@dataclass(frozen=True)
class NetworkConfig:
    address: str | None = None  # the instance's address
    prefix: int | None = None
    gateway: str | None = None


@dataclass(frozen=True)
class VMSpec:
    instance_id: uuid.UUID
    hostname: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    boot: BootSource
    network: NetworkConfig = field(default_factory=NetworkConfig)
    ssh_keys: tuple[str, ...] = ()
    user_data: str | None = None


@dataclass(frozen=True)
class VMStats:
    cpu_time_ns: int
    memory_total_mb: int
    memory_used_mb: int
    disk_read_bytes: int
    disk_write_bytes: int
    net_rx_bytes: int
    net_tx_bytes: int
    collected_at: datetime


class ComputeDriver(ABC):
    """One hypervisor node."""

    @abstractmethod
    def create(self, spec: VMSpec) -> None:
        """Build the disk, define and boot the VM. On failure, remove everything made and raise
        :class:`DriverError`. Creating a VM that already exists is an error."""

    @abstractmethod
    def start(self, instance_id: uuid.UUID) -> None:
        """Boot a stopped VM. Starting a running VM succeeds."""

    @abstractmethod
    def stop(self, instance_id: uuid.UUID, timeout: float = 60) -> None:
        """Shut the guest down gracefully; force it off after ``timeout`` seconds. Stopping a
        stopped VM succeeds."""

    @abstractmethod
    def reboot(self, instance_id: uuid.UUID) -> None:
        """Restart a running VM (a hard reset if the guest ignores the request)."""

    @abstractmethod
    def destroy(self, instance_id: uuid.UUID) -> None:
        """Remove the VM, its disk and its console log. A missing VM is not an error."""

    @abstractmethod
    def state(self, instance_id: uuid.UUID) -> VMState:
        """The VM's power state; :attr:`VMState.MISSING` when the node does not know it."""

    @abstractmethod
    def stats(self, instance_id: uuid.UUID) -> VMStats:
        """Cumulative counters (CPU time, disk and network bytes) and current memory."""

    @abstractmethod
    def list(self) -> list[uuid.UUID]:
        """Ids of the platform's VMs defined on the node (for reconciliation)."""

    @abstractmethod
    def console_output(self, instance_id: uuid.UUID) -> str:
        """What the VM has written to its serial console so far ("" when nothing)."""

    @abstractmethod
    def open_console(self, instance_id: uuid.UUID, loop: asyncio.AbstractEventLoop) -> Console:
        """Attach to the running VM's serial console, delivering into ``loop``. Blocking: call
        it in a worker thread. :class:`ConsoleBusyError` while another client holds it,
        :class:`ConsoleUnavailableError` when the VM is not running."""

    @abstractmethod
    def send_ctrl_alt_del(self, instance_id: uuid.UUID) -> None:
        """Press Ctrl-Alt-Del on the running VM's keyboard (the guest decides what it does)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
