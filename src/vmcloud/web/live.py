"""A page's live stream: ``GET <page>/stream`` answers Server-Sent Events whose messages are
HTML with ``hx-swap-oob`` elements, which htmx's ``hx-sse`` extension applies to the page.

A stream holds no database connection while it waits: each render opens a short session of
its own. The login is checked when the stream opens and again every half minute, so a stream
ends with its session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from vmcloud.web.events import Hub, Stream, respond
from vmcloud.web.session import LoginRequiredError, PanelLogin, cookie_secret, login_of

T = TypeVar("T")
Event = dict[str, str | None]
Resync = Callable[[Session], str | None]
Render = Callable[[Session, Event], str | None]


def _login(factory: sessionmaker[Session], raw: str | None) -> PanelLogin | None:
    with factory() as db:
        return login_of(db, raw)


async def read_db(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread, once a connection slot is free (as a request waits for one):
    for reads outside a request's session (streams, downloads)."""
    async with request.app.state.db_slots:
        return await run_in_threadpool(fn, *args)


async def stream(
    request: Request,
    *,
    resync: Resync,
    render: Render | None = None,
    redraw_on: Callable[[Event], bool] | None = None,
    everyone: bool = False,
    allowed: Callable[[PanelLogin], bool] = lambda _: True,
    follows: tuple[str, uuid.UUID] | None = None,
) -> Response:
    """The stream of the signed-in user's changes (``everyone``: every user's, for staff
    pages, when ``allowed``). ``follows``: also the changes of that one object (kind, id)
    announced to its owner, whoever that is: the page of one ticket or instance, which staff
    may view too. The caller has checked that the viewer may see it, and ``render`` reads it
    again with the viewer's rights. ``resync`` renders the page's whole live region;
    ``render`` the fragments of one change (None when the change is not on this page); or,
    for a page that redraws its whole live region on a change, ``redraw_on`` picks the changes
    that do (a burst of them is one redraw)."""
    if (render is None) == (redraw_on is None):
        raise TypeError("a stream takes either render or redraw_on")
    factory: sessionmaker[Session] = request.app.state.session_factory
    raw = cookie_secret(request)
    login = await read_db(request, _login, factory, raw)
    if login is None or not allowed(login):
        raise LoginRequiredError()
    user_id: uuid.UUID | None = None if everyone else login.user.id

    def read(fn: Callable[[Session], str | None]) -> str | None:
        with factory() as db:
            return fn(db)

    def still_allowed() -> bool:
        again = _login(factory, raw)
        return again is not None and allowed(again)

    hub: Hub = request.app.state.panel_events
    return respond(
        hub,
        user_id,
        Stream(
            resync=lambda: read(resync),
            render=None if render is None else lambda event: read(lambda db: render(db, event)),
            still_allowed=still_allowed,
            redraw_on=redraw_on,
        ),
        request.app.state.db_slots,
        follows=(follows[0], str(follows[1])) if follows else None,
    )
