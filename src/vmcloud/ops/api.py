"""Liveness, readiness and metrics: what load balancers and Prometheus ask of each process."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from starlette.responses import Response

from vmcloud.backup import metrics as backup_metrics
from vmcloud.config import Settings
from vmcloud.core.errors import ServiceUnavailableError
from vmcloud.core.logging import get_logger
from vmcloud.core.worker import heartbeat_age
from vmcloud.db import migrate

router = APIRouter(tags=["operations"])
log = get_logger(__name__)


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and migrated to head")
def readyz(request: Request) -> dict[str, Any]:
    engine: Engine = request.app.state.engine
    heads: set[str] = request.app.state.migration_heads
    try:
        current = migrate.current_revisions(engine)
    except Exception as exc:
        log.warning("readyz.database_unreachable", error=type(exc).__name__)
        raise ServiceUnavailableError("The database is not reachable.") from None
    if current != heads:
        raise ServiceUnavailableError(
            "The database schema is not at the latest migration; run `vmcloud db upgrade`."
        )
    body: dict[str, Any] = {"status": "ready", "database": "ok", "migrations": sorted(current)}
    settings: Settings = request.app.state.settings
    if settings.expect_worker or settings.run_worker:
        body["worker"] = _worker_state(engine, settings)
    return body


def _worker_state(engine: Engine, settings: Settings) -> str:
    """A job worker, in this process or another, beat within ``job_stalled_after_seconds``
    (the same bound after which its jobs count as stalled), else 503."""
    limit = settings.job_stalled_after_seconds
    try:
        age = heartbeat_age(engine)
    except Exception as exc:
        log.warning("readyz.database_unreachable", error=type(exc).__name__)
        raise ServiceUnavailableError("The database is not reachable.") from None
    if age is None or age > limit:
        log.warning("readyz.no_worker", heartbeat_age=age)
        silent = "No job worker is registered" if age is None else "No job worker has beaten"
        raise ServiceUnavailableError(
            f"{silent} in the last {limit:g} s: mail, provisioning and billing jobs are not"
            " being run."
        )
    return "running"


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    backup_metrics.refresh(request.app.state.engine)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
