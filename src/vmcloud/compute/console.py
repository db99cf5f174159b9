"""Serial consoles over WebSockets: the bridge between a client's socket and a VM's console
(``ComputeDriver.open_console``), shared by the panel's socket and the API's.

The callers check who may attach (``service.get_console_instance``) before accepting; this
module holds one client per VM: a per-process registry answers at once, and the hypervisor
itself refuses a second attach from any other process. Frames are binary both ways: what the
guest wrote, and keystrokes for it (text frames are taken as UTF-8 keystrokes too). A refusal
after the checks is a close with a code of the 4000s and a reason the page shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.compute import nodes
from vmcloud.compute.drivers.base import (
    ComputeDriver,
    Console,
    ConsoleBusyError,
    ConsoleUnavailableError,
    DriverError,
)
from vmcloud.compute.models import Instance
from vmcloud.core.errors import ConflictError
from vmcloud.core.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")

MAX_INPUT_FRAME = 16 * 1024  # a paste; bigger frames close the socket (1009)
BOOT_LOG_TAIL = 64 * 1024  # characters of the boot log a page shows
RECHECK_SECONDS = 30.0  # the login is checked again this often while a console is open
OPEN_TIMEOUT = 15.0  # seconds a node has to attach a console
OPEN_THREADS = 8  # consoles being attached at once (each waits on a node in a thread)
CLOSE_ENDED = 1000
CLOSE_TOO_BIG = 1009
CLOSE_FAILED = 1011
CLOSE_BUSY = 4409
CLOSE_UNAVAILABLE = 4410
CLOSE_LOGGED_OUT = 4401

_holders: set[uuid.UUID] = set()  # touched only in the event loop's thread
# Threads of the consoles' own: a hung node holds one of these, never one the app needs.
_opener = ThreadPoolExecutor(max_workers=OPEN_THREADS, thread_name_prefix="console-open")
_closing: set[asyncio.Task[None]] = set()  # consoles that arrived after nobody waited


@dataclass(frozen=True)
class Target:
    """What a socket attaches to, read before the request's session closes (no connection is
    held while a console is open)."""

    instance_id: uuid.UUID
    driver: ComputeDriver | None


def target(*, db: Session, instance: Instance) -> Target:
    node = nodes.get_node(db=db, node_id=instance.node_id) if instance.node_id else None
    return Target(instance.id, nodes.driver_for(node) if node else None)


def note_opened(*, db: Session, instance: Instance, user: User) -> None:
    """Someone else's console (an admin's attach to a customer's VM) leaves an audit row;
    owners opening their own leave none. Called once per socket, at its handshake."""
    if instance.user_id != user.id:
        audit.record(
            db=db,
            action="instance.console_opened",
            actor_id=user.id,
            entity_type="instance",
            entity_id=instance.id,
        )
        db.commit()


def boot_log(*, db: Session, instance: Instance) -> str:
    """The tail of what the VM wrote to its serial console (its boot log), "" when none."""
    found = target(db=db, instance=instance)
    if found.driver is None:
        return ""
    try:
        text = found.driver.console_output(instance.id)
    except DriverError:
        return ""
    return text[-BOOT_LOG_TAIL:]


def send_ctrl_alt_del(*, db: Session, instance: Instance) -> None:
    found = target(db=db, instance=instance)
    if found.driver is None or instance.status != "running":
        raise ConflictError("The VM is not running.")
    try:
        found.driver.send_ctrl_alt_del(instance.id)
    except DriverError as exc:
        raise ConflictError(f"The VM did not take the keys: {exc}") from exc


StillAllowed = Callable[[], Awaitable[bool]]


async def serve(websocket: WebSocket, found: Target, still_allowed: StillAllowed) -> None:
    """Accept ``websocket`` (its caller has checked who it is) and bridge it to the VM's
    console until either side ends; the console is always released."""
    instance_id = found.instance_id
    if found.driver is None:
        await _refuse(websocket, CLOSE_UNAVAILABLE, "The VM is not running.")
        return
    if instance_id in _holders:
        await _refuse(websocket, CLOSE_BUSY, "The console is open in another tab or window.")
        return
    _holders.add(instance_id)
    try:
        try:
            console = await _open(found.driver, instance_id)
        except TimeoutError:
            log.warning("console.open_timeout", instance_id=str(instance_id))
            await _refuse(websocket, CLOSE_FAILED, "The VM's node did not answer in time.")
            return
        except ConsoleBusyError:
            await _refuse(websocket, CLOSE_BUSY, "The console is open in another tab or window.")
            return
        except ConsoleUnavailableError:
            await _refuse(websocket, CLOSE_UNAVAILABLE, "The VM is not running.")
            return
        except DriverError as exc:
            log.warning("console.open_failed", instance_id=str(instance_id), error=str(exc))
            await _refuse(websocket, CLOSE_FAILED, "The console could not be opened.")
            return
        try:
            await websocket.accept()
            code, reason = await _bridge(websocket, console, still_allowed)
            if code is not None:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await websocket.close(code, reason)
        finally:
            with anyio.CancelScope(shield=True):  # released even when the server cancels us
                await console.close()
    finally:
        _holders.discard(instance_id)


async def _open(driver: ComputeDriver, instance_id: uuid.UUID) -> Console:
    """``driver.open_console`` in one of the consoles' threads, waited for ``OPEN_TIMEOUT`` at
    most. A console that arrives after the wait ended (timed out, or the socket's task was
    cancelled) is closed at once: nobody else would."""
    loop = asyncio.get_running_loop()
    opening = loop.run_in_executor(_opener, driver.open_console, instance_id, loop)
    try:
        return await asyncio.wait_for(asyncio.shield(opening), OPEN_TIMEOUT)
    except BaseException:
        opening.add_done_callback(_close_late)
        raise


def _close_late(opening: asyncio.Future[Console]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        return
    task = asyncio.ensure_future(opening.result().close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def deny(websocket: WebSocket, response: Response) -> None:
    """Refuse the handshake with an HTTP answer (a bare 403 when the server cannot send one),
    before accepting: a browser learns nothing more than that it failed."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1008)


async def read_db(websocket: WebSocket, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread once one of the app's connection slots is free (as a
    request waits for one); the socket holds no database connection while it is open."""
    async with websocket.app.state.db_slots:
        return await run_in_threadpool(fn, *args)


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """After the checks: accepted then closed at once, so a browser can read why."""
    await websocket.accept()
    await websocket.close(code, reason)


Ending = tuple[int | None, str]


async def _recheck(still_allowed: StillAllowed) -> bool:
    """The login's recheck; a database that fails to answer leaves it allowed until the next."""
    try:
        return await still_allowed()
    except SQLAlchemyError as exc:
        log.warning("console.recheck_failed", error=str(exc))
        return True


async def _bridge(websocket: WebSocket, console: Console, still_allowed: StillAllowed) -> Ending:
    async def guest_to_client() -> Ending:
        while data := await console.read():
            await websocket.send_bytes(data)
        return CLOSE_ENDED, "The console ended (the VM stopped)."

    async def client_to_guest() -> Ending:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return None, ""
            data = message.get("bytes") or (message.get("text") or "").encode()
            if len(data) > MAX_INPUT_FRAME:
                return CLOSE_TOO_BIG, "Too much input at once."
            try:
                await console.write(data)
            except DriverError as exc:
                return CLOSE_FAILED, str(exc)

    async def watch() -> Ending:
        while await asyncio.sleep(RECHECK_SECONDS, True) and await _recheck(still_allowed):
            pass
        return CLOSE_LOGGED_OUT, "Your session has ended."

    ending: Ending = (None, "")

    async def first_to_end(fn: Callable[[], Awaitable[Ending]]) -> None:
        nonlocal ending
        try:
            result = await fn()
        except (WebSocketDisconnect, OSError, RuntimeError):  # the client went away mid-send
            result = (None, "")
        if not group.cancel_scope.cancel_called:
            ending = result
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for fn in (guest_to_client, client_to_guest, watch):
            group.start_soon(first_to_end, fn)
    return ending
