"""Engine, sessions and the request's unit of work.

Services only ``flush()``; the request (``get_db``) or the job boundary commits once, so every
row a request writes commits or rolls back together.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vmcloud.audit import service as audit
from vmcloud.config import Settings
from vmcloud.core.errors import ProblemError
from vmcloud.core.net import ClientMeta
from vmcloud.site_settings.service import CACHE_KEY, SettingsCache


def pool_capacity(settings: Settings) -> int:
    """How many connections an engine of :func:`make_engine` holds at most."""
    return 2 * settings.db_pool_size


def make_engine(
    settings: Settings, url: str | None = None, *, read_only: bool = False, pre_ping: bool = False
) -> Engine:
    target = url or settings.database_url
    if not target:
        raise RuntimeError("no database configured: set DATABASE_URL or use `vmcloud up`")
    return create_engine(
        target,
        # Up to twice db_pool_size connections, all kept: an "overflow" connection is closed
        # when it is handed back, so under steady concurrency above pool_size every request
        # paid for a new connection (and a new server process). Same ceiling, no churn.
        pool_size=pool_capacity(settings),
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        # No ping before each checkout (a round trip on every request): a connection the
        # server dropped fails its first statement instead, which is a disconnect, so that
        # request answers 503 and the whole pool is replaced at once (tests/faults).
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        # Bound values (password hashes, token hashes) never appear in error messages or logs.
        hide_parameters=True,
        connect_args={
            "connect_timeout": settings.db_connect_timeout,
            "options": "-c timezone=UTC -c plan_cache_mode=force_custom_plan"
            + (" -c default_transaction_read_only=on" if read_only else ""),
            "application_name": "vmcloud",
        },
    )


def make_read_engine(settings: Settings) -> Engine | None:
    """The engine of the routed reads (``database_read_url``), or None when reads go to the
    primary. Its transactions are read-only wherever they land, the primary included (libpq
    falls back to it when the standby is down), and a pooled connection is checked before use:
    the standby may have gone away since, and the next connection then finds the primary."""
    if not settings.database_read_url:
        return None
    return make_engine(settings, settings.database_read_url, read_only=True, pre_ping=True)


def make_session_factory(bind: Engine | Connection, **options: Any) -> sessionmaker[Session]:
    """Sessions for one database. Sessions of one factory share a settings cache."""
    return sessionmaker(
        bind=bind,
        expire_on_commit=False,
        autoflush=True,
        info={CACHE_KEY: SettingsCache()},
        **options,
    )


@contextmanager
def unit_of_work(
    factory: sessionmaker[Session], *, context: audit.AuditContext | None = None
) -> Iterator[Session]:
    """One unit of work outside a request (a job, a billing batch, a CLI command): a session
    whose rows commit together when the block ends, or roll back if it raises. ``context``
    says who acts for the audit trail; none means the system. Requests get theirs from
    :data:`DbSession`, which commits the same way."""
    with factory() as db:
        audit.bind(db, context or audit.AuditContext())
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            raise


def flush_or_raise(db: Session, error: ProblemError) -> None:
    """Flush in a savepoint; when the database refuses it (a unique key or a constraint that a
    concurrent request won), raise ``error`` instead, with the session still usable."""
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError as exc:
        raise error from exc


F = TypeVar("F", bound=Callable[..., Any])
_READ_ONLY = "__vmcloud_read_only__"


def read_only(endpoint: F) -> F:
    """Mark a route that writes nothing: its session runs without a transaction (each
    statement on its own, in autocommit), which spares the BEGIN and COMMIT round trips and
    the commit at the end. Its statements may see different committed states, so only for
    routes whose reads need no common snapshot."""
    setattr(endpoint, _READ_ONLY, True)
    return endpoint


# Each engine's autocommit variant (sharing its pool), made once.
_AUTOCOMMIT: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def _session_for(request: Request) -> tuple[Session, bool]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    bind = factory.kw.get("bind")
    if getattr(request.scope.get("endpoint"), _READ_ONLY, False) and isinstance(bind, Engine):
        autocommit = _AUTOCOMMIT.get(bind)
        if autocommit is None:
            autocommit = _AUTOCOMMIT[bind] = bind.execution_options(isolation_level="AUTOCOMMIT")
        return factory(bind=autocommit), True
    return factory(), False


class RequestSlots:
    """At most as many requests with a session at once as the pool has connections; the rest
    wait here, on the event loop, holding nothing.

    A request holds its connection from its first statement until its session closes, across
    several threadpool hops (the caller's lookup, the endpoint, the commit). Without this
    gate, requests beyond the pool's size wait for a connection inside threadpool threads; when
    they hold every thread, the requests that hold the connections cannot get a thread to
    finish, and all of them stall until the checkout times out (503). The threadpool is sized
    to at least twice the slots, so the holders always find a thread even while other users
    of the engine (an in-process worker) make a few requests wait for a connection."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._semaphore = anyio.Semaphore(slots)

    def size_threadpool(self) -> None:
        """Call on the serving event loop (the app's lifespan)."""
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, 2 * self.slots + 8)

    async def __aenter__(self) -> None:
        await self._semaphore.acquire()

    async def __aexit__(self, *_: object) -> None:
        self._semaphore.release()


async def _db_session(request: Request, meta: ClientMeta) -> AsyncIterator[Session]:
    # Async, so that opening and closing the session costs no threadpool hop; only the commit
    # (I/O) goes to a thread. Creating a session does no I/O: it connects at its first
    # statement, which runs in a sync dependency or endpoint.
    async with request.app.state.db_slots:
        session, read_only = _session_for(request)
        audit.bind(session, audit.AuditContext(ip=meta.ip, user_agent=meta.user_agent))
        try:
            yield session
            # Runs after the endpoint returns and before the response is sent (scope="function"),
            # so a failed commit becomes an error response instead of a lie.
            if session.in_transaction() and (
                not read_only or session.new or session.dirty or session.deleted
            ):
                await run_in_threadpool(session.commit)
        except ProblemError as exc:
            if exc.commit:
                await run_in_threadpool(session.commit)
            elif not read_only:
                await run_in_threadpool(session.rollback)
            raise
        except BaseException:
            if not read_only:
                await run_in_threadpool(session.rollback)
            raise
        finally:
            # Without a transaction in progress (committed, rolled back, or autocommit), closing
            # only hands the connection back to the pool: no I/O.
            session.close()


DbSession = Annotated[Session, Depends(_db_session, scope="function")]


async def _read_db_session(request: Request, primary: DbSession) -> AsyncIterator[Session]:
    """A session on the read replica (``app.state.read_session_factory``), or the request's
    own session when none is configured. It reads committed rows only, some milliseconds
    behind the primary: for list routes, never for a page shown right after a change."""
    factory: sessionmaker[Session] | None = request.app.state.read_session_factory
    if factory is None:
        yield primary
        return
    async with request.app.state.read_slots:
        session = factory()
        try:
            yield session
        finally:
            # Ends the read-only transaction (a ROLLBACK, I/O) and hands the connection back.
            await run_in_threadpool(session.close)


ReadDbSession = Annotated[Session, Depends(_read_db_session, scope="function")]
"""For read-only routes that may read from a replica (docs/operations.md, "Read replica")."""
