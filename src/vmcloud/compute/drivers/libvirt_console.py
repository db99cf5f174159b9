"""A libvirt VM's serial console as a :class:`Console`: a non-blocking stream
(``virDomain.openConsole``) on a connection of its own, bridged into an asyncio loop.

Stream events need an event loop implementation, registered once per process before the
connections that use it are opened. This registers libvirt's own default implementation, run
by one daemon thread, rather than libvirt-python's asyncio one (``libvirtaio``): libvirt calls
the implementation from whichever thread opens, uses or closes a connection, and this process
calls libvirt from worker threads (the driver's blocking calls, the in-process job worker),
while an asyncio loop may only be touched from its own thread; the default implementation is
thread-safe. The stream's callbacks run in that thread and hand what they read to the app's
loop with ``call_soon_threadsafe``. The same thread answers keepalives, so connections opened
after it started (``setKeepAlive`` on each console's) notice a dead node.

Buffers are bounded both ways: output waiting for a slow client pauses reading the stream (the
guest's serial port then waits); input beyond ``INPUT_LIMIT`` not yet taken by the stream waits
for room (the client's socket then waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
from typing import Any

import libvirt

from vmcloud.compute.drivers.base import Console, DriverError

CHUNK = 16384
OUTPUT_HIGH = 256 * 1024  # stop reading the stream above this many undelivered bytes…
OUTPUT_LOW = 64 * 1024  # …and read again below this
INPUT_LIMIT = 64 * 1024
KEEPALIVE_INTERVAL = 5  # seconds; the connection is dropped after 3 unanswered
_ALWAYS: int = libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP

# libvirt-python's own C module: ``virStream.eventAddCallback`` without its wrapper, see
# ``_watch``.
_libvirtmod: Any = importlib.import_module("libvirtmod")

_events_started = False
_events_lock = threading.Lock()


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and run it in a daemon thread, once."""
    global _events_started
    with _events_lock:
        if _events_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _events_started = True


def open_connection(uri: str) -> libvirt.virConnect:
    """A connection of the console's own, watched by the event thread."""
    ensure_event_loop()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise DriverError(f"cannot reach the hypervisor: {exc.get_error_message()}") from exc
    with contextlib.suppress(libvirt.libvirtError):  # a transport without keepalives
        conn.setKeepAlive(KEEPALIVE_INTERVAL, 3)
    return conn


class _Detached:
    """Stands in for a released stream in the callback data libvirt keeps (see ``_watch``)."""

    def _dispatchStreamEventCallback(self, _events: int, _data: object) -> int:  # noqa: N802
        return 0


def _watch(stream: libvirt.virStream, events: int, callback: object) -> dict[str, object]:
    """``stream.eventAddCallback(events, callback, None)``, returning the data handed to libvirt.

    libvirt's remote driver never calls the function that frees that data when the callback is
    removed, and libvirt-python's own data names the stream (and the wrapper keeps the callback
    on the stream): the stream, and the connection it holds open, would live as long as the
    process. Keeping the data lets ``_release`` empty it: what leaks is a small dict.
    """
    data: dict[str, object] = {"stream": stream, "cb": callback, "opaque": None}
    if _libvirtmod.virStreamEventAddCallback(stream._o, events, data) == -1:
        raise libvirt.libvirtError("virStreamEventAddCallback() failed")
    return data


def _unwatch(data: dict[str, object]) -> None:
    # Never emptied: a dispatch already under way reads both keys.
    data["stream"], data["cb"] = _Detached(), None


class LibvirtConsole(Console):
    """Owns ``conn`` and ``stream`` (already attached by ``openConsole``) until ``close``."""

    def __init__(
        self, conn: libvirt.virConnect, stream: libvirt.virStream, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._conn = conn
        self._stream: libvirt.virStream | None = stream
        self._loop = loop
        self._output: asyncio.Queue[bytes] = asyncio.Queue()
        self._lock = threading.Lock()  # guards what both threads touch, below
        self._buffered = 0  # bytes read from the stream, not yet taken by ``read``
        self._paused = False
        self._input = bytearray()
        self._mask = 0
        self._released = False
        self._room = asyncio.Event()  # set (in the loop) when input was taken by the stream
        self.ended = False  # the loop's view
        with self._lock:
            self._mask = self._wanted()
            self._watched = _watch(stream, self._mask, self._on_event)

    # -- the event thread ----------------------------------------------------------------

    def _wanted(self) -> int:
        mask = _ALWAYS
        if not self._paused:
            mask |= libvirt.VIR_STREAM_EVENT_READABLE
        if self._input:
            mask |= libvirt.VIR_STREAM_EVENT_WRITABLE
        return mask

    def _update(self) -> None:
        """Watch what is wanted now (caller holds the lock)."""
        wanted = self._wanted()
        if wanted != self._mask and self._stream is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._stream.eventUpdateCallback(wanted)
            self._mask = wanted

    def _on_event(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        with self._lock:
            if self._released:
                return
            try:
                if events & libvirt.VIR_STREAM_EVENT_READABLE:
                    self._read_available(stream)
                if events & libvirt.VIR_STREAM_EVENT_WRITABLE and self._input:
                    sent = stream.send(bytes(self._input[:CHUNK]))
                    if isinstance(sent, int) and sent > 0:
                        del self._input[:sent]
                        self._to_loop(self._room.set)
                if events & _ALWAYS:
                    self._hang_up()
                self._update()
            except libvirt.libvirtError:
                self._hang_up()

    def _read_available(self, stream: libvirt.virStream) -> None:
        while not self._paused:
            data = stream.recv(CHUNK)
            if data == -2:  # nothing more for now
                return
            if not data:  # the guest side closed (the VM stopped)
                self._hang_up()
                return
            assert isinstance(data, bytes)
            self._buffered += len(data)
            self._paused = self._buffered > OUTPUT_HIGH
            self._to_loop(self._output.put_nowait, data)

    def _hang_up(self) -> None:
        self._paused = True
        self._to_loop(self._end)

    def _to_loop(self, fn: object, *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(fn, *args)  # type: ignore[arg-type]

    # -- the app's loop ------------------------------------------------------------------

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self._output.put_nowait(b"")
            self._room.set()

    async def read(self) -> bytes:
        if self.ended and self._output.empty():
            return b""
        data = await self._output.get()
        with self._lock:
            self._buffered -= len(data)
            if self._paused and not self.ended and self._buffered < OUTPUT_LOW:
                self._paused = False
                self._update()
        return data

    async def write(self, data: bytes) -> None:
        """Queue ``data``; while ``INPUT_LIMIT`` bytes wait for the stream, wait for room (a
        large paste is slowed down, not refused)."""
        while True:
            with self._lock:
                if self.ended or self._released:
                    raise DriverError("the console has ended")
                if not self._input or len(self._input) + len(data) <= INPUT_LIMIT:
                    self._input += data
                    self._update()
                    return
                self._room.clear()
            await self._room.wait()

    async def close(self) -> None:
        self._end()
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
            if self._released or stream is None:
                return
            self._released = True
            with contextlib.suppress(libvirt.libvirtError):
                stream.eventRemoveCallback()
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            _unwatch(self._watched)  # the stream is now referenced from here alone…
            del stream  # …and freed, letting go of its connection
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.close()

    @property
    def released(self) -> bool:
        return self._released
