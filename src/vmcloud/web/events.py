"""Live pages without polling: one ``LISTEN`` connection per web process, fanned out to the
open Server-Sent Events streams of that process.

:class:`Hub` holds the connection (psycopg, autocommit, ``conn.notifies()``) and a queue per
open stream. A notification goes to the streams of the user it names, to the streams that
follow the object it names (a staff member on a customer's ticket or instance page), and to
the streams that follow every user (staff pages). One that names no user is staff-only (an
internal note): only the streams that follow every user hear it. When the connection breaks,
the hub reconnects with a growing pause and then tells every stream to *resync*:
notifications sent while it was away are lost, so each stream re-renders its whole live
region, as it does when it (re)connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from prometheus_client import Gauge
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from vmcloud.core import events
from vmcloud.core.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")

OPEN_STREAMS = Gauge("vmcloud_panel_streams", "Live panel streams open in this process.")
RESYNC = {"kind": "resync"}
QUEUE_SIZE = 256
MAX_PAUSE = 10.0


Follows = tuple[str, str]  # (kind, id) of one object


@dataclass(eq=False)
class Subscription:
    """One open stream's mailbox. ``user_id`` None follows every user (staff pages);
    ``follows`` also takes the changes of that one object announced to any user (its page's
    stream, whoever views it)."""

    user_id: uuid.UUID | None
    follows: Follows | None = None
    queue: asyncio.Queue[dict[str, str | None]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )

    def wants(self, event: dict[str, str | None]) -> bool:
        if self.user_id is None:
            return True
        user = event.get("user")
        if user is None:  # staff-only
            return False
        if str(self.user_id) == user:
            return True
        return self.follows is not None and (event.get("kind"), event.get("id")) == self.follows

    def offer(self, event: dict[str, str | None]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # A stream that fell this far behind re-renders everything instead.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(dict(RESYNC))


class Hub:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._subscriptions: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="panel-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.listening.clear()

    @contextlib.asynccontextmanager
    async def subscribe(
        self, user_id: uuid.UUID | None, follows: Follows | None = None
    ) -> AsyncIterator[Subscription]:
        if self._task is None:  # listen from the first open stream on, not before
            await self.start()
        subscription = Subscription(user_id, follows)
        self._subscriptions.add(subscription)
        OPEN_STREAMS.inc()
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            OPEN_STREAMS.dec()

    def dispatch(self, event: dict[str, str | None]) -> None:
        for subscription in list(self._subscriptions):
            if subscription.wants(event):
                subscription.offer(event)

    def _resync_all(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(dict(RESYNC))

    async def _run(self) -> None:
        pause = 0.5
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {events.CHANNEL}")
                    if not first:
                        log.info("panel_events.reconnected")
                        self._resync_all()
                    first = False
                    pause = 0.5
                    self.listening.set()
                    async for notify in conn.notifies():
                        event = events.parse(notify.payload)
                        if event is not None:
                            self.dispatch(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: say so, wait, listen again
                self.listening.clear()
                log.error("panel_events.listen_failed", error=str(exc), retry_in=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE)


@dataclass
class Stream:
    """What one page's stream sends: ``resync()`` renders the page's whole live region,
    ``render(event)`` the fragments one change touches (None when it touches nothing on this
    page). Both return HTML with ``hx-swap-oob`` elements; both run in a thread (they read the
    database)."""

    resync: Callable[[], str | None]
    render: Callable[[dict[str, str | None]], str | None] | None = None
    still_allowed: Callable[[], bool] = lambda: True
    # For a page whose one live region is redrawn by any change it cares about (a staff list
    # or counters): instead of ``render``, the changes that redraw it. A burst of them (a
    # billing run moves hundreds of balances) is one redraw, not one per change.
    redraw_on: Callable[[dict[str, str | None]], bool] | None = None


CHECK_EVERY = 30.0
GATHER = 0.25  # seconds a redrawing stream lets a burst of changes land before it redraws
LISTEN_WAIT = 5.0  # seconds a new stream waits for the hub to listen before it renders


async def _events(
    hub: Hub,
    user_id: uuid.UUID | None,
    stream: Stream,
    gate: AbstractAsyncContextManager[Any],
    follows: Follows | None = None,
) -> AsyncIterator[dict[str, str]]:
    async def run(fn: Callable[..., T], *args: Any) -> T:
        # Each read waits for a connection slot like a request does (db.session.RequestSlots):
        # a burst of changes must not leave threads waiting on the pool.
        async with gate:
            return await run_in_threadpool(fn, *args)

    async with hub.subscribe(user_id, follows) as subscription:
        # Render only once the hub listens: a change committed between a render and the
        # LISTEN would never be heard. (While the database is away, render anyway after a
        # while: the hub resyncs every stream when it listens again.)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.listening.wait(), LISTEN_WAIT)
        html = await run(stream.resync)
        if html:
            # No ``event:`` line: htmx's hx-sse swaps unnamed messages only (a named one, even
            # "message", is dispatched as a DOM event and never swapped).
            yield {"data": html}
        checked = time.monotonic()
        while True:
            try:
                event: dict[str, str | None] | None = await asyncio.wait_for(
                    subscription.queue.get(), CHECK_EVERY
                )
            except TimeoutError:
                event = None
            # A login that ended (logout, suspension, a role taken away) ends its streams too:
            # checked every CHECK_EVERY seconds however busy the stream is, before it renders.
            if time.monotonic() - checked >= CHECK_EVERY:
                if not await run(stream.still_allowed):
                    return
                checked = time.monotonic()
            if event is None:
                continue
            if event.get("kind") == "resync":
                html = await run(stream.resync)
            elif stream.redraw_on is not None:
                if not stream.redraw_on(event):
                    continue
                # Whatever else arrives meanwhile is in this redraw, which reads after it.
                await asyncio.sleep(GATHER)
                while not subscription.queue.empty():
                    subscription.queue.get_nowait()
                html = await run(stream.resync)
            elif stream.render is not None:
                html = await run(stream.render, event)
            else:
                html = None
            if html:
                yield {"data": html}


def respond(
    hub: Hub,
    user_id: uuid.UUID | None,
    stream: Stream,
    gate: AbstractAsyncContextManager[Any],
    follows: Follows | None = None,
) -> EventSourceResponse:
    """The SSE response of one page's stream: a full resync first, then one message per
    change that touches the page. Its reads pass ``gate`` (the app's connection slots)."""
    return EventSourceResponse(
        _events(hub, user_id, stream, gate, follows),
        ping=15,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
