"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vmcloud import __version__
from vmcloud.config import Settings, get_settings
from vmcloud.core.errors import install_problem_handlers
from vmcloud.core.middleware import RequestContextMiddleware
from vmcloud.db import migrate
from vmcloud.db.session import make_engine, make_session_factory
from vmcloud.ops.api import router as ops_router

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    """Every domain's router, mounted under ``/api/v1``. Later domains add theirs here."""
    router = APIRouter(prefix=API_PREFIX)
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

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_engine:
            engine.dispose()

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
    app.state.session_factory = session_factory or make_session_factory(engine)
    app.state.migration_heads = migrate.head_revisions()

    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(ops_router)
    app.include_router(api_router())
    return app
