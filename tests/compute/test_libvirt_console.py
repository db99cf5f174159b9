"""The libvirt console and boot log on real nodes: a closed console lets go of its stream and
connection at once, and the boot log of a node whose files are not on this machine is read
and removed through the node's libvirt."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
import weakref
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from tests.compute.conftest import SecondLibvirt, drop_pool
from tests.compute.test_driver_conformance import _spec, _wait_for
from vmcloud.compute.drivers.base import BootSource, ConsoleUnavailableError
from vmcloud.compute.drivers.libvirt import LibvirtDriver
from vmcloud.compute.drivers.libvirt_console import INPUT_LIMIT, LibvirtConsole
from vmcloud.compute.tiny_image import READY_MARKER, TinyImage

pytestmark = pytest.mark.slow


def _boot(tiny: TinyImage) -> BootSource:
    return BootSource(
        kind="kernel", kernel=str(tiny.kernel), initrd=str(tiny.initrd), cmdline=tiny.cmdline
    )


def test_a_closed_console_frees_its_stream_without_a_collection(
    libvirt_node: LibvirtDriver, tiny: TinyImage
) -> None:
    spec = _spec(_boot(tiny))
    libvirt_node.create(spec)

    async def open_and_close() -> weakref.ref[libvirt.virStream]:
        loop = asyncio.get_running_loop()
        console = await asyncio.to_thread(libvirt_node.open_console, spec.instance_id, loop)
        assert isinstance(console, LibvirtConsole)
        stream = weakref.ref(console._stream)
        await console.close()
        return stream

    gc.disable()  # only reference counting frees it, as between two collections
    try:
        streams = [asyncio.run(open_and_close()) for _ in range(3)]
        deadline = time.monotonic() + 5  # the event thread drops its reference on its turn
        while any(ref() is not None for ref in streams) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(ref() is None for ref in streams), "a closed console's stream lives on"
    finally:
        gc.enable()
        libvirt_node.destroy(spec.instance_id)


def test_a_vm_stopped_after_the_check_has_no_console(
    libvirt_node: LibvirtDriver, tiny: TinyImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``openConsole``'s own refusal of a stopped VM (it stopped after ``isActive``) is
    "not running", not a libvirt error."""
    spec = _spec(_boot(tiny))
    libvirt_node.create(spec)
    try:
        libvirt_node._require(spec.instance_id).destroy()
        monkeypatch.setattr(libvirt.virDomain, "isActive", lambda _self: 1)
        with pytest.raises(ConsoleUnavailableError):
            libvirt_node.open_console(spec.instance_id, asyncio.new_event_loop())
    finally:
        monkeypatch.undo()
        libvirt_node.destroy(spec.instance_id)


def test_the_boot_log_of_a_node_whose_files_are_elsewhere(
    second_libvirt: SecondLibvirt, tiny: TinyImage
) -> None:
    """A remote node's storage directory is a path on that node: the boot log is read (its
    tail) and removed through the node's storage pool, not through this machine's files."""
    pool, namespace = f"vmcloud-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    storage = second_libvirt.storage_dir()
    here = LibvirtDriver(
        second_libvirt.uri, storage_dir=str(storage), pool_name=pool, namespace=namespace
    )
    # The same node and pool, through a driver for which the directory is not on this machine.
    remote = LibvirtDriver(
        second_libvirt.uri,
        storage_dir=f"/nonexistent-{uuid.uuid4().hex[:8]}",
        pool_name=pool,
        namespace=namespace,
    )
    spec = _spec(_boot(tiny))
    here.create(spec)
    log_file = Path(storage) / f"{spec.instance_id}.console.log"
    try:
        _wait_for(here, spec.instance_id, READY_MARKER)
        remote_log = remote.console_output(spec.instance_id)
        assert READY_MARKER in remote_log
        assert remote_log == here.console_output(spec.instance_id)[-len(remote_log) :]
        remote.destroy(spec.instance_id)
        assert not log_file.exists()
        assert remote.console_output(spec.instance_id) == ""
    finally:
        here.destroy(spec.instance_id)
        drop_pool(pool, second_libvirt.uri)
        here.close()
        remote.close()


def test_a_large_paste_waits_for_the_stream_instead_of_failing(
    libvirt_node: LibvirtDriver, tiny: TinyImage
) -> None:
    spec = _spec(_boot(tiny))
    libvirt_node.create(spec)

    async def paste() -> None:
        loop = asyncio.get_running_loop()
        console = await asyncio.to_thread(libvirt_node.open_console, spec.instance_id, loop)
        try:
            # Frames as fast as a client sends them: more than the input buffer holds.
            for _ in range(3 * INPUT_LIMIT // 16384):
                await console.write(b"#" * 16384)
            await console.write(b"\x15echo PASTED-$((2+3))\r")  # Ctrl-U drops the line
            seen = b""
            async with asyncio.timeout(60):
                while b"PASTED-5" not in seen:
                    data = await console.read()
                    assert data, "the console ended"
                    seen += data
        finally:
            await console.close()

    try:
        _wait_for(libvirt_node, spec.instance_id, READY_MARKER)
        asyncio.run(paste())
    finally:
        libvirt_node.destroy(spec.instance_id)


def _file_serial(xml: str, log: str) -> str:
    """The domain as drivers before the interactive console defined it: a serial port and
    console that only write to a file."""
    domain = ET.fromstring(xml)
    devices = domain.find("devices")
    assert devices is not None
    for old in devices.findall("serial") + devices.findall("console"):
        devices.remove(old)
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=log, append="on")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="file")
    ET.SubElement(console, "source", path=log, append="on")
    ET.SubElement(console, "target", type="serial", port="0")
    return ET.tostring(domain, encoding="unicode")


def test_a_vm_defined_with_a_file_serial_port_gains_a_console_when_started(
    libvirt_node: LibvirtDriver, tiny: TinyImage
) -> None:
    """VMs defined before the pty console had a file-only serial port, which ``openConsole``
    cannot attach to; starting such a VM redefines its serial port (the boot log stays)."""
    spec = _spec(_boot(tiny))
    libvirt_node.create(spec)
    try:
        libvirt_node.stop(spec.instance_id, timeout=0)
        domain = libvirt_node._require(spec.instance_id)
        log = libvirt_node._console_path(spec.instance_id)
        old = _file_serial(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), log)
        libvirt_node._call(lambda conn: conn.defineXML(old))
        libvirt_node.start(spec.instance_id)
        _wait_for(libvirt_node, spec.instance_id, READY_MARKER)

        async def type_at_the_shell() -> bytes:
            loop = asyncio.get_running_loop()
            console = await asyncio.to_thread(libvirt_node.open_console, spec.instance_id, loop)
            try:
                await console.write(b"echo $((6*7))\r")
                seen = b""
                async with asyncio.timeout(20):
                    while b"\n42" not in seen:
                        seen += await console.read()
                return seen
            finally:
                await console.close()

        assert b"\n42" in asyncio.run(type_at_the_shell())
        assert "echo $((6*7))" in libvirt_node.console_output(spec.instance_id)
    finally:
        libvirt_node.destroy(spec.instance_id)
