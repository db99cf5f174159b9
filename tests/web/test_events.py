"""The live-update hub: committed announcements reach the right streams, rolled-back ones
never do, and a lost LISTEN connection comes back and tells every stream to resync."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from vmcloud.core import events
from vmcloud.core.jobs import libpq_url
from vmcloud.db.session import RequestSlots
from vmcloud.web.events import Hub, Stream, _events


async def _next(queue: asyncio.Queue[dict[str, str | None]]) -> dict[str, str | None]:
    return await asyncio.wait_for(queue.get(), 5)


def test_committed_changes_reach_their_users_streams_only(fresh_database_url: str) -> None:
    engine = create_engine(fresh_database_url)
    alice, bob = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> None:
        hub = Hub(libpq_url(fresh_database_url))
        async with (
            hub.subscribe(alice) as mine,
            hub.subscribe(bob) as theirs,
            hub.subscribe(None) as staff,
        ):
            await asyncio.wait_for(hub.listening.wait(), 5)
            with Session(engine) as db:  # rolled back: never announced
                events.announce(db, kind="instance", user_id=alice, id="lost")
                db.rollback()
            with Session(engine) as db:
                events.announce(db, kind="instance", user_id=alice, id="i-1")
                db.commit()
            got = await _next(mine.queue)
            assert got == {"kind": "instance", "user": str(alice), "id": "i-1"}
            assert (await _next(staff.queue))["id"] == "i-1"
            await asyncio.sleep(0.2)
            assert theirs.queue.empty() and mine.queue.empty()
        await hub.stop()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()


def test_a_lost_listen_connection_comes_back_and_resyncs(fresh_database_url: str) -> None:
    engine = create_engine(fresh_database_url, isolation_level="AUTOCOMMIT")
    user = uuid.uuid4()

    async def scenario() -> None:
        hub = Hub(libpq_url(fresh_database_url))
        async with hub.subscribe(user) as stream:
            await asyncio.wait_for(hub.listening.wait(), 5)
            with engine.connect() as conn:
                killed = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                    )
                ).all()
            assert killed
            assert (await asyncio.wait_for(stream.queue.get(), 10)) == {"kind": "resync"}
            with Session(engine) as db:
                events.announce(db, kind="balance", user_id=user)
                db.commit()
            assert (await _next(stream.queue))["kind"] == "balance"
        await hub.stop()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()


def test_stream_messages_are_unnamed_so_htmx_swaps_them(fresh_database_url: str) -> None:
    """htmx's hx-sse swaps only messages without an ``event:`` name (a named one, even
    "message", is dispatched as a DOM event and the page never changes)."""

    async def scenario() -> None:
        hub = Hub(libpq_url(fresh_database_url))
        stream = Stream(resync=lambda: '<p id="x" hx-swap-oob="true">1</p>', render=lambda _: None)
        messages = _events(hub, None, stream, RequestSlots(1))
        first = await asyncio.wait_for(anext(messages), 5)
        assert first == {"data": '<p id="x" hx-swap-oob="true">1</p>'}
        await messages.aclose()
        await hub.stop()

    asyncio.run(scenario())


def test_every_web_process_hears_every_change(fresh_database_url: str) -> None:
    """Two processes' hubs on one database: a change made anywhere reaches both."""
    engine = create_engine(fresh_database_url)
    user = uuid.uuid4()

    async def scenario() -> None:
        first, second = Hub(libpq_url(fresh_database_url)), Hub(libpq_url(fresh_database_url))
        async with first.subscribe(user) as one, second.subscribe(user) as two:
            await asyncio.wait_for(first.listening.wait(), 5)
            await asyncio.wait_for(second.listening.wait(), 5)
            with Session(engine) as db:
                events.announce(db, kind="top_up", user_id=user, id="t-1")
                db.commit()
            assert (await _next(one.queue))["id"] == "t-1"
            assert (await _next(two.queue))["id"] == "t-1"
        await first.stop()
        await second.stop()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
