"""Engine, sessions and the request's unit of work.

Services only ``flush()``; the request (``get_db``) or the job boundary commits once, so every
row a request writes commits or rolls back together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vmcloud.audit import service as audit
from vmcloud.config import Settings
from vmcloud.core.errors import ProblemError
from vmcloud.core.net import ClientMeta
from vmcloud.site_settings.service import CACHE_KEY, SettingsCache


def make_engine(settings: Settings, url: str | None = None) -> Engine:
    target = url or settings.database_url
    if not target:
        raise RuntimeError("no database configured: set DATABASE_URL or use `vmcloud up`")
    return create_engine(
        target,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        # Bound values (password hashes, token hashes) never appear in error messages or logs.
        hide_parameters=True,
        connect_args={
            "connect_timeout": settings.db_connect_timeout,
            "options": "-c timezone=UTC -c plan_cache_mode=force_custom_plan",
            "application_name": "vmcloud",
        },
    )


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


def _db_session(request: Request, meta: ClientMeta) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    session = factory()
    audit.bind(session, audit.AuditContext(ip=meta.ip, user_agent=meta.user_agent))
    try:
        yield session
        # Runs after the endpoint returns and before the response is sent (scope="function"),
        # so a failed commit becomes an error response instead of a lie.
        session.commit()
    except ProblemError as exc:
        if exc.commit:
            session.commit()
        else:
            session.rollback()
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(_db_session, scope="function")]
