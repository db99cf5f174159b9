"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vmcloud import __version__
from vmcloud.accounts import api as accounts_api
from vmcloud.accounts import passwords
from vmcloud.audit import api as audit_api
from vmcloud.billing import api as billing_api
from vmcloud.billing.payments import api as payments_api
from vmcloud.catalog import api as catalog_api
from vmcloud.compute import api as compute_api
from vmcloud.config import Settings, get_settings
from vmcloud.core import jobs, routes
from vmcloud.core.errors import install_problem_handlers
from vmcloud.core.logging import get_logger
from vmcloud.core.mail import make_mailer
from vmcloud.core.middleware import RequestContextMiddleware
from vmcloud.core.net import parse_networks
from vmcloud.core.openapi import install_openapi
from vmcloud.core.ratelimit import RateLimiter
from vmcloud.core.size_limits import RequestSizeLimitMiddleware
from vmcloud.core.worker import WorkerHealth, supervise
from vmcloud.db import migrate
from vmcloud.db.session import (
    RequestSlots,
    make_engine,
    make_read_engine,
    make_session_factory,
    pool_capacity,
)
from vmcloud.ops.api import router as ops_router
from vmcloud.site_settings import api as settings_api
from vmcloud.support import api as support_api
from vmcloud.support import attachments
from vmcloud.web import app as panel

API_PREFIX = "/api/v1"
log = get_logger(__name__)


@functools.cache
def api_router() -> APIRouter:
    """Every domain's router, mounted under ``/api/v1``. Later domains add theirs here."""
    router = APIRouter(prefix=API_PREFIX)
    for domain_router in (
        accounts_api.auth,
        accounts_api.me,
        accounts_api.admin,
        catalog_api.public,
        catalog_api.admin,
        settings_api.public,
        settings_api.admin,
        audit_api.router,
        compute_api.router,
        compute_api.admin,
        billing_api.router,
        billing_api.subscriptions,
        billing_api.admin,
        payments_api.router,
        payments_api.admin,
        support_api.router,
        support_api.admin,
    ):
        router.include_router(domain_router)
    return router


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    session_factory: sessionmaker[Session] | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    owns_engine = engine is None
    engine = engine or make_engine(settings)
    session_factory = session_factory or make_session_factory(engine)
    read_engine = make_read_engine(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        app.state.db_slots.size_threadpool()
        async with _worker(settings, session_factory, app.state.worker_health):
            yield
        await panel.shutdown(app)
        limiter.engine.dispose()
        if owns_engine:
            engine.dispose()
        if read_engine is not None:
            read_engine.dispose()

    app = FastAPI(
        title="VMCloud API",
        version=__version__,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.db_slots = RequestSlots(pool_capacity(settings))
    app.state.read_session_factory = read_engine and make_session_factory(read_engine)
    app.state.read_slots = RequestSlots(pool_capacity(settings))
    app.state.migration_heads = migrate.head_revisions()
    app.state.trusted_proxies = parse_networks(settings.trusted_proxies)
    app.state.worker_health = WorkerHealth() if settings.run_worker else None
    limiter = RateLimiter.for_database(engine.url, namespace=settings.rate_limit_namespace)
    app.state.rate_limiter = limiter
    passwords.configure(settings.password_hash_workers)

    install_problem_handlers(app)
    install_openapi(app)
    panel.install(app, settings)
    app.add_middleware(
        RequestSizeLimitMiddleware,
        max_body_bytes=settings.max_request_body_bytes,
        max_header_bytes=settings.max_request_header_bytes,
        uploads=[attachments.upload_route(session_factory)],
    )
    app.add_middleware(RequestContextMiddleware)
    routes.include(app, ops_router, api_router(), payments_api.pages)
    return app


@asynccontextmanager
async def _worker(
    settings: Settings, session_factory: sessionmaker[Session], health: WorkerHealth | None
) -> AsyncIterator[None]:
    """Runs a job worker beside the API when ``settings.run_worker`` (``vmcloud up``), kept
    alive through database outages; ``/readyz`` reports it."""
    if not settings.run_worker or health is None:
        yield
        return
    assert settings.database_url
    jobs.configure(jobs.Runtime(settings, session_factory, make_mailer(settings)))
    with jobs.worker_app(settings.database_url, settings.worker_concurrency) as worker_app:
        task = asyncio.create_task(
            supervise(
                worker_app,
                settings=settings,
                conninfo=jobs.libpq_url(settings.database_url),
                health=health,
                exit_on_failure=False,
            )
        )
        log.info("worker.started", concurrency=settings.worker_concurrency)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.info("worker.stopped")
