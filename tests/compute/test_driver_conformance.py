"""One contract, every driver: the in-memory fake and libvirt with real QEMU guests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compute.conftest import SecondLibvirt, drop_pool
from vmcloud.compute.drivers import libvirt_console
from vmcloud.compute.drivers.base import (
    BootSource,
    ComputeDriver,
    Console,
    ConsoleBusyError,
    ConsoleUnavailableError,
    DriverError,
    NetworkConfig,
    VMSpec,
    VMState,
)
from vmcloud.compute.drivers.fake import (
    DiesWhileBootingDriver,
    FailsOnCreateDriver,
    FakeDriver,
    LosesVMsDriver,
)
from vmcloud.compute.drivers.libvirt import LibvirtDriver as LibvirtDriverT
from vmcloud.compute.drivers.libvirt_console import CHUNK, LibvirtConsole
from vmcloud.compute.tiny_image import BOOT_MARKER, READY_MARKER, TinyImage

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = 60.0


@pytest.fixture(params=["fake", "libvirt"])
def driver(
    request: pytest.FixtureRequest, tiny: TinyImage
) -> Iterator[tuple[ComputeDriver, BootSource]]:
    boot = BootSource(
        kind="kernel", kernel=str(tiny.kernel), initrd=str(tiny.initrd), cmdline=tiny.cmdline
    )
    if request.param == "fake":
        yield FakeDriver(), boot
    else:
        node: LibvirtDriverT = request.getfixturevalue("libvirt_node")
        yield node, boot


def _spec(default_boot: BootSource, **overrides: object) -> VMSpec:
    values: dict[str, object] = {
        "instance_id": uuid.uuid4(),
        "hostname": "conformance",
        "vcpus": 1,
        "memory_mb": 192,
        "disk_gb": 1,
        "boot": default_boot,
        "network": NetworkConfig(address="192.0.2.10", prefix=24, gateway="192.0.2.1"),
    }
    values.update(overrides)
    return VMSpec(**values)  # type: ignore[arg-type]


def _wait_for(driver: ComputeDriver, instance_id: uuid.UUID, text: str, count: int = 1) -> str:
    deadline = time.monotonic() + BOOT_TIMEOUT
    output = ""
    while time.monotonic() < deadline:
        output = driver.console_output(instance_id)
        if output.count(text) >= count:
            return output
        time.sleep(0.2)
    raise AssertionError(f"{text!r} x{count} never appeared on the console:\n{output[-2000:]}")


def test_full_lifecycle(driver: tuple[ComputeDriver, BootSource]) -> None:
    node, boot = driver
    spec = _spec(boot)
    node.create(spec)
    try:
        assert node.state(spec.instance_id) == VMState.RUNNING
        assert spec.instance_id in node.list()
        console = _wait_for(node, spec.instance_id, READY_MARKER)
        assert BOOT_MARKER in console
        assert "hostname=conformance" in console

        stats = node.stats(spec.instance_id)
        assert stats.memory_total_mb == 192
        assert stats.cpu_time_ns > 0
        assert 0 <= stats.memory_used_mb <= stats.memory_total_mb

        started = time.monotonic()
        node.stop(spec.instance_id, timeout=20)
        # The guest powered itself off on the ACPI request, well before the forced stop.
        assert time.monotonic() - started < 15
        assert node.state(spec.instance_id) == VMState.STOPPED
        node.stop(spec.instance_id, timeout=5)  # stopping a stopped VM is fine

        node.start(spec.instance_id)
        assert node.state(spec.instance_id) == VMState.RUNNING
        _wait_for(node, spec.instance_id, BOOT_MARKER, count=2)
        node.start(spec.instance_id)  # starting a running VM is fine

        node.reboot(spec.instance_id)
        _wait_for(node, spec.instance_id, BOOT_MARKER, count=3)
        assert node.state(spec.instance_id) == VMState.RUNNING
    finally:
        node.destroy(spec.instance_id)
    assert node.state(spec.instance_id) == VMState.MISSING
    assert spec.instance_id not in node.list()
    assert node.console_output(spec.instance_id) == ""
    node.destroy(spec.instance_id)  # destroying a missing VM succeeds


def test_creating_the_same_vm_twice_fails_and_keeps_the_first(
    driver: tuple[ComputeDriver, BootSource],
) -> None:
    node, boot = driver
    spec = _spec(boot)
    node.create(spec)
    try:
        with pytest.raises(DriverError):
            node.create(spec)
        assert node.state(spec.instance_id) == VMState.RUNNING
    finally:
        node.destroy(spec.instance_id)


def test_unknown_vms(driver: tuple[ComputeDriver, BootSource]) -> None:
    node, _ = driver
    missing = uuid.uuid4()
    assert node.state(missing) == VMState.MISSING
    assert node.console_output(missing) == ""
    for action in (node.start, node.reboot, node.stats):
        with pytest.raises(DriverError):
            action(missing)
    node.destroy(missing)


def test_reboot_of_a_stopped_vm_is_refused(driver: tuple[ComputeDriver, BootSource]) -> None:
    node, boot = driver
    spec = _spec(boot)
    node.create(spec)
    try:
        _wait_for(node, spec.instance_id, READY_MARKER)
        node.stop(spec.instance_id, timeout=5)
        with pytest.raises(DriverError):
            node.reboot(spec.instance_id)
    finally:
        node.destroy(spec.instance_id)


def test_a_failed_create_leaves_nothing(driver: tuple[ComputeDriver, BootSource]) -> None:
    node, boot = driver
    broken = BootSource(kind="kernel", kernel="/nonexistent/vmlinuz", initrd="/nonexistent/initrd")
    spec = _spec(boot, boot=broken)
    if isinstance(node, FakeDriver):
        node = FailsOnCreateDriver()
    before = set(node.list())
    with pytest.raises(DriverError):
        node.create(spec)
    assert node.state(spec.instance_id) == VMState.MISSING
    assert set(node.list()) == before


def test_libvirt_failed_create_removes_its_disk(libvirt_node: LibvirtDriverT) -> None:
    spec = _spec(BootSource(kind="kernel", kernel="/nonexistent/vmlinuz", initrd="/none"))
    with pytest.raises(DriverError):
        libvirt_node.create(spec)
    assert not (Path(libvirt_node.storage_dir) / f"{spec.instance_id}.qcow2").exists()


def test_libvirt_destroy_removes_disk_and_console(
    libvirt_node: LibvirtDriverT, tiny: TinyImage
) -> None:
    boot = BootSource(
        kind="kernel", kernel=str(tiny.kernel), initrd=str(tiny.initrd), cmdline=tiny.cmdline
    )
    spec = _spec(boot, disk_gb=2)
    libvirt_node.create(spec)
    disk = Path(libvirt_node.storage_dir) / f"{spec.instance_id}.qcow2"
    console = Path(libvirt_node.storage_dir) / f"{spec.instance_id}.console.log"
    assert disk.exists()
    _wait_for(libvirt_node, spec.instance_id, BOOT_MARKER)
    assert console.exists()
    libvirt_node.destroy(spec.instance_id)
    assert not disk.exists()
    assert not console.exists()


def test_fake_failure_variants(tiny: TinyImage) -> None:
    boot = BootSource(kind="kernel", kernel=str(tiny.kernel), initrd=str(tiny.initrd))
    dying = DiesWhileBootingDriver()
    spec = _spec(boot)
    dying.create(spec)
    assert dying.state(spec.instance_id) == VMState.CRASHED
    assert READY_MARKER not in dying.console_output(spec.instance_id)

    losing = LosesVMsDriver()
    losing.create(spec)
    losing.lose(spec.instance_id)
    assert losing.state(spec.instance_id) == VMState.MISSING
    assert losing.list() == []


async def _read_until(console: Console, wanted: bytes, timeout: float = 20) -> bytes:
    seen = b""
    async with asyncio.timeout(timeout):
        while wanted not in seen:
            data = await console.read()
            if not data:
                raise AssertionError(f"the console ended before {wanted!r}: {seen[-500:]!r}")
            seen += data
    return seen


def test_console_round_trip_one_client_at_a_time(
    driver: tuple[ComputeDriver, BootSource],
) -> None:
    node, boot = driver
    spec = _spec(boot)
    node.create(spec)
    # The tiny guest's shell computes; the fake echoes what it is sent.
    answer = b"echo $((6*7))" if isinstance(node, FakeDriver) else b"\n42"

    async def attach() -> None:
        loop = asyncio.get_running_loop()
        console = await asyncio.to_thread(node.open_console, spec.instance_id, loop)
        try:
            with pytest.raises(ConsoleBusyError):
                await asyncio.to_thread(node.open_console, spec.instance_id, loop)
            await console.write(b"echo $((6*7))\r")
            await _read_until(console, answer)
        finally:
            await console.close()
        assert await console.read() == b""
        # Closing released the stream: the next client attaches.
        again = await asyncio.to_thread(node.open_console, spec.instance_id, loop)
        stopping = asyncio.create_task(asyncio.to_thread(node.stop, spec.instance_id, 20))
        async with asyncio.timeout(30):  # the VM stopping ends the console
            while await again.read():
                pass
        await stopping
        await again.close()
        with pytest.raises(ConsoleUnavailableError):
            await asyncio.to_thread(node.open_console, spec.instance_id, loop)

    try:
        _wait_for(node, spec.instance_id, READY_MARKER)
        asyncio.run(attach())
        # The boot log is still kept beside the interactive console.
        assert "echo $((6*7))" in node.console_output(spec.instance_id)
    finally:
        node.destroy(spec.instance_id)


def test_ctrl_alt_del_reaches_a_running_vm_only(driver: tuple[ComputeDriver, BootSource]) -> None:
    node, boot = driver
    spec = _spec(boot)
    node.create(spec)
    try:
        node.send_ctrl_alt_del(spec.instance_id)
        node.stop(spec.instance_id, timeout=5)
        with pytest.raises(DriverError):
            node.send_ctrl_alt_del(spec.instance_id)
    finally:
        node.destroy(spec.instance_id)


def test_the_console_of_another_daemons_vm(second_libvirt: SecondLibvirt, tiny: TinyImage) -> None:
    """A node reached through its own connection (another daemon, as a remote node is): the
    console's stream comes from that node's libvirt."""
    pool = f"vmcloud-test-{uuid.uuid4().hex[:8]}"
    node = LibvirtDriverT(
        second_libvirt.uri,
        storage_dir=str(second_libvirt.storage_dir()),
        pool_name=pool,
        namespace=uuid.uuid4().hex[:8],
    )
    boot = BootSource(
        kind="kernel", kernel=str(tiny.kernel), initrd=str(tiny.initrd), cmdline=tiny.cmdline
    )
    spec = _spec(boot)

    async def attach() -> None:
        console = await asyncio.to_thread(
            node.open_console, spec.instance_id, asyncio.get_running_loop()
        )
        try:
            await console.write(b"echo $((6*7))\r")
            await _read_until(console, b"\n42")
        finally:
            await console.close()

    node.create(spec)
    try:
        _wait_for(node, spec.instance_id, READY_MARKER)
        asyncio.run(attach())
    finally:
        node.destroy(spec.instance_id)
        drop_pool(pool, second_libvirt.uri)
        node.close()


def test_libvirt_console_output_is_bounded_while_nobody_reads(
    libvirt_node: LibvirtDriverT, tiny: TinyImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    high = 32 * 1024  # lower marks, so the slow emulated serial port reaches them quickly
    monkeypatch.setattr(libvirt_console, "OUTPUT_HIGH", high)
    monkeypatch.setattr(libvirt_console, "OUTPUT_LOW", 8 * 1024)
    boot = BootSource(
        kind="kernel", kernel=str(tiny.kernel), initrd=str(tiny.initrd), cmdline=tiny.cmdline
    )
    spec = _spec(boot)

    async def flood() -> None:
        loop = asyncio.get_running_loop()
        console = await asyncio.to_thread(libvirt_node.open_console, spec.instance_id, loop)
        assert isinstance(console, LibvirtConsole)
        try:
            await console.write(b"yes vmcloud-flood | head -n 20000; echo FLOOD-$((1+1))\r")
            await asyncio.sleep(3)  # the guest writes ~340 KB; nobody reads meanwhile
            assert console._paused  # reading the stream stopped…
            assert high < console._buffered <= high + CHUNK  # …at the high mark
            await _read_until(console, b"FLOOD-2", timeout=120)  # reading resumes it
        finally:
            await console.close()
        assert console.released

    libvirt_node.create(spec)
    try:
        _wait_for(libvirt_node, spec.instance_id, READY_MARKER)
        asyncio.run(flood())
    finally:
        libvirt_node.destroy(spec.instance_id)
