"""The live-update hub: committed announcements reach the right streams, rolled-back ones
never do, and a lost LISTEN connection comes back and tells every stream to resync."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import add_sample, make_node, make_pool
from tests.factories.support import make_ticket
from tests.web.browser.server import free_socket, live_settings, serve_in_thread
from vmcloud.accounts.models import User
from vmcloud.app import create_app
from vmcloud.billing import flows
from vmcloud.compute.models import Instance
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.core import events
from vmcloud.core.clock import utcnow
from vmcloud.core.jobs import libpq_url
from vmcloud.db.session import RequestSlots, make_engine, make_session_factory
from vmcloud.support import service
from vmcloud.support.schemas import MessageCreate
from vmcloud.support.storage import LocalStorage
from vmcloud.web import events as web_events
from vmcloud.web.events import Hub, Stream, _events


async def _next(queue: asyncio.Queue[dict[str, str | None]]) -> dict[str, str | None]:
    return await asyncio.wait_for(queue.get(), 5)


async def _next_ticket(queue: asyncio.Queue[dict[str, str | None]]) -> dict[str, str | None]:
    """The next ``ticket`` event of a staff stream, which also hears the staff-only ``audit``
    event of each committing write."""
    while (event := await _next(queue))["kind"] != "ticket":
        pass
    return event


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
        assert not hub.listening.is_set()  # stopped: nobody listens any more

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


def test_a_streams_first_render_waits_for_the_hub_to_listen(fresh_database_url: str) -> None:
    """The first stream of a process starts the hub's LISTEN; a page rendered before it
    listens would miss a change committed in between, and never hear of it."""
    seen: list[bool] = []

    async def scenario() -> None:
        hub = Hub(libpq_url(fresh_database_url))

        def resync() -> str:
            seen.append(hub.listening.is_set())
            return "<p>page</p>"

        messages = _events(hub, None, Stream(resync=resync, render=lambda _: None), RequestSlots(1))
        await asyncio.wait_for(anext(messages), 5)
        await messages.aclose()
        await hub.stop()

    asyncio.run(scenario())
    assert seen == [True]


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


def test_a_stream_that_follows_an_object_hears_its_public_changes_whoever_owns_it(
    fresh_database_url: str,
) -> None:
    """A staff member on a customer's ticket page: the stream runs under the staff member's
    id but follows that ticket, so the customer's public changes reach it; another ticket's
    and staff-only announcements (no user) do not."""
    engine = create_engine(fresh_database_url)
    customer, agent, ticket, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    async def scenario() -> None:
        hub = Hub(libpq_url(fresh_database_url))
        async with hub.subscribe(agent, follows=("ticket", str(ticket))) as page:
            await asyncio.wait_for(hub.listening.wait(), 5)
            with Session(engine) as db:
                events.announce(db, kind="ticket", user_id=customer, id=other)
                events.announce(db, kind="metric", user_id=customer, id=ticket)
                events.announce(db, kind="ticket", user_id=None, id=ticket)  # a note
                events.announce(db, kind="ticket", user_id=customer, id=ticket)
                db.commit()
            got = await _next(page.queue)
            assert got == {"kind": "ticket", "user": str(customer), "id": str(ticket)}
            await asyncio.sleep(0.2)
            assert page.queue.empty()
        await hub.stop()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()


def test_an_internal_note_reaches_staff_streams_only(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """A note is announced without the customer's id: staff pages hear it, no page of the
    customer's does (not even the ticket's own, which would learn that a note was written)."""
    engine = create_engine(fresh_database_url)
    with Session(engine) as db:
        customer = make_user(db)
        agent = make_user(db, role="support")
        ticket = make_ticket(db, customer)
        db.commit()
        customer_id, agent_id, ticket_id = customer.id, agent.id, ticket.id

    def write(is_internal: bool) -> None:
        with Session(engine) as db:
            author = db.get_one(User, agent_id)
            found = service.get_changeable_ticket(db=db, ticket_id=ticket_id, user=author)
            body = MessageCreate(message="a word", is_internal=is_internal)
            storage = LocalStorage(tmp_path)
            service.add_message(
                db=db, ticket=found, author=author, body=body, uploads=[], storage=storage
            )
            db.commit()

    async def scenario() -> None:
        hub = Hub(libpq_url(fresh_database_url))
        async with (
            hub.subscribe(customer_id) as mine,
            hub.subscribe(customer_id, follows=("ticket", str(ticket_id))) as page,
            hub.subscribe(None) as staff,
        ):
            await asyncio.wait_for(hub.listening.wait(), 5)
            await asyncio.to_thread(write, True)
            got = await _next_ticket(staff.queue)
            assert got == {"kind": "ticket", "user": None, "id": str(ticket_id)}
            await asyncio.sleep(0.2)
            assert mine.queue.empty() and page.queue.empty()
            await asyncio.to_thread(write, False)  # a public reply reaches them all
            assert (await _next(mine.queue))["user"] == str(customer_id)
            assert (await _next(page.queue))["id"] == str(ticket_id)
            assert (await _next_ticket(staff.queue))["user"] == str(customer_id)
        await hub.stop()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()


class _PanelOverHttp:
    """A panel login on a live server over plain http: its ``__Host-`` cookies are ``Secure``,
    so they are sent back by hand."""

    def __init__(self, url: str, login: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)
        self.cookies: dict[str, str] = {}
        form = self._get("/login")
        token = re.search(r'name="csrftoken" value="([^"]+)"', form.text)
        assert token
        answer = self.http.post(
            "/login",
            data={"login": login, "password": PASSWORD, "csrftoken": token.group(1)},
            headers=self._header(),
        )
        assert answer.status_code == 303, answer.text
        self._keep(answer)

    def _header(self) -> dict[str, str]:
        return {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def _keep(self, response: httpx.Response) -> None:
        for raw in response.headers.get_list("set-cookie"):
            name, _, rest = raw.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]

    def _get(self, path: str) -> httpx.Response:
        response = self.http.get(path, headers=self._header())
        self._keep(response)
        return response

    def messages(self, path: str) -> Iterator[str]:
        """The stream's messages (their data), as they come."""
        with self.http.stream("GET", path, headers=self._header()) as response:
            assert response.status_code == 200
            data: list[str] = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data.append(line.removeprefix("data:").strip())
                elif not line and data:
                    yield "\n".join(data)
                    data = []


def test_staff_on_a_customers_pages_get_their_live_updates(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """Through the real app under uvicorn: a support agent's streams of a customer's ticket
    and graphs pages hear the customer's changes to them."""
    engine = create_engine(fresh_database_url)
    with Session(engine) as db:
        make_node(db)
        make_pool(db, "198.18.79.0/28")
        customer = make_user(db, balance="100.00")
        agent = make_user(db, role="support")
        ticket = make_ticket(db, customer)
        body = InstanceCreate(
            name="watched", product="nano", region="local", image="tiny-linux",
            billing_cycle="monthly",
        )  # fmt: skip
        instance = flows.order_instance(db=db, owner=customer, body=body)
        db.commit()
        ids = customer.id, ticket.id, instance.id
        agent_login = agent.username
    sock = free_socket()
    settings = live_settings(
        database_url=fresh_database_url, data_dir=tmp_path, port=sock.getsockname()[1]
    ).model_copy(update={"run_worker": False})
    app_engine = make_engine(settings)
    app = create_app(settings, engine=app_engine, session_factory=make_session_factory(app_engine))

    def customer_replies() -> None:
        with Session(engine) as db:
            author = db.get_one(User, ids[0])
            found = service.get_changeable_ticket(db=db, ticket_id=ids[1], user=author)
            body = MessageCreate(message="It works again, thanks")
            storage = LocalStorage(tmp_path)
            service.add_message(
                db=db, ticket=found, author=author, body=body, uploads=[], storage=storage
            )
            db.commit()

    def a_sample_arrives() -> None:
        with Session(engine) as db:
            watched = db.get_one(Instance, ids[2])
            add_sample(db, watched, utcnow() - timedelta(seconds=5), 1000)
            events.announce(db, kind="metric", user_id=ids[0], id=ids[2])
            db.commit()

    try:
        with serve_in_thread(app, sock) as url:
            staff = _PanelOverHttp(url, agent_login)
            ticket_page = staff.messages(f"/support/{ids[1]}/stream")
            assert "It works again" not in next(ticket_page)  # the resync on open
            customer_replies()
            assert "It works again, thanks" in next(ticket_page)
            ticket_page.close()

            graphs_page = staff.messages(f"/instances/{ids[2]}/graphs/stream")
            assert "<tr data-t=" not in next(graphs_page)
            a_sample_arrives()
            assert "<tr data-t=" in next(graphs_page)
            graphs_page.close()
            staff.http.close()
    finally:
        app_engine.dispose()
        engine.dispose()


def test_a_busy_stream_still_ends_when_its_viewer_loses_the_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The login and role are checked every CHECK_EVERY seconds even while events keep coming
    (a staff page hears node passes, audit rows and balances all the time): a demoted or
    logged-out viewer gets at most that long of further updates."""
    monkeypatch.setattr(web_events, "CHECK_EVERY", 0.3)
    allowed = {"ok": True}

    async def scenario() -> tuple[int, bool]:
        hub = Hub("dbname=none")
        hub._task = asyncio.ensure_future(asyncio.sleep(10))  # no LISTEN connection here
        hub.listening.set()
        stream = Stream(
            resync=lambda: "all", render=lambda _: "rows", still_allowed=lambda: allowed["ok"]
        )
        updates = web_events._events(hub, None, stream, contextlib.nullcontext())
        assert (await updates.__anext__())["data"] == "all"
        allowed["ok"] = False  # logged out, or no longer staff

        async def feed() -> None:
            for _ in range(40):  # an event every 0.05 s for 2 s: never quiet for CHECK_EVERY
                await asyncio.sleep(0.05)
                hub.dispatch({"kind": "audit", "user": None, "id": "x"})

        feeder = asyncio.create_task(feed())
        renders, ended = 0, False
        try:
            while True:
                await asyncio.wait_for(updates.__anext__(), 1)
                renders += 1
        except StopAsyncIteration:
            ended = not feeder.done()  # it ended while the events still flowed
        except TimeoutError:
            pass
        await feeder
        hub._task.cancel()
        return renders, ended

    renders, ended = asyncio.run(scenario())
    assert ended
    assert renders <= 8  # about CHECK_EVERY's worth of events, not the whole flow (40)


def test_a_burst_of_changes_is_one_redraw_of_a_staff_region() -> None:
    """A staff list redrawn by any change it follows (``redraw_on``) redraws once for a burst
    (a billing run moves hundreds of balances), after the last change of it, and not at all
    for changes it does not follow."""

    async def scenario() -> tuple[list[str], list[str]]:
        hub = Hub("dbname=none")
        hub._task = asyncio.ensure_future(asyncio.sleep(10))  # no LISTEN connection here
        hub.listening.set()
        seen: list[str] = []
        state = {"n": 0}

        def resync() -> str:
            seen.append(f"redraw at {state['n']}")
            return f"region after {state['n']}"

        stream = Stream(resync=resync, redraw_on=lambda event: event["kind"] == "balance")
        updates = web_events._events(hub, None, stream, contextlib.nullcontext())
        messages = [(await updates.__anext__())["data"]]
        for _ in range(5):
            hub.dispatch({"kind": "metric", "user": "u", "id": "x"})  # not followed
        await asyncio.sleep(0.5)
        for n in range(1, 201):
            state["n"] = n
            hub.dispatch({"kind": "balance", "user": str(uuid.uuid4()), "id": None})
        pending = asyncio.ensure_future(updates.__anext__())
        await asyncio.sleep(web_events.GATHER / 2)  # the stream is gathering: more arrive
        for n in range(201, 251):
            state["n"] = n
            hub.dispatch({"kind": "balance", "user": str(uuid.uuid4()), "id": None})
        messages.append((await asyncio.wait_for(pending, 5))["data"])
        with contextlib.suppress(TimeoutError):
            messages.append((await asyncio.wait_for(updates.__anext__(), 1))["data"])
        await updates.aclose()
        hub._task.cancel()
        return messages, seen

    messages, seen = asyncio.run(scenario())
    assert messages == ["region after 0", "region after 250"]
    assert seen == ["redraw at 0", "redraw at 250"]


def test_a_stream_takes_render_or_redraw_on() -> None:
    from vmcloud.web import live

    async def make(**kwargs: object) -> None:
        await live.stream(object(), resync=lambda _db: None, **kwargs)  # type: ignore[arg-type]

    with pytest.raises(TypeError):
        asyncio.run(make())
    with pytest.raises(TypeError):
        asyncio.run(make(render=lambda _db, _e: None, redraw_on=lambda _e: True))
