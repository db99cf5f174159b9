"""A job worker that outlives database outages.

procrastinate's worker stops when its database connection breaks (a failed heartbeat or
listener stops it with an INFO line, a failed fetch raises). :func:`supervise` runs it in a
loop: when it stops without being asked to, it says so at ERROR, waits for the database with
growing pauses (1 s doubling to 10 s), runs a stalled-jobs pass and starts it again. When no
worker could run for ``worker_give_up_seconds`` it fails loudly: ``vmcloud worker`` exits 1
(so its supervisor, ``vmcloud up`` / ``serve --worker`` or the operator's, restarts it), and
a worker inside the API process keeps trying.

Whether a worker is alive is read from the database, not from a process's memory: every
worker beats in procrastinate's ``procrastinate_workers`` table, so an API process knows about
a worker running in another process (:func:`heartbeat_age`, used by ``/readyz``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import procrastinate
import psycopg
from prometheus_client import Counter, Gauge
from sqlalchemy import Engine, text

from vmcloud.config import Settings
from vmcloud.core import jobs
from vmcloud.core.logging import get_logger

log = get_logger(__name__)

WORKER_UP = Gauge("vmcloud_worker_up", "1 while this process's job worker is running.")
WORKER_RESTARTS = Counter(
    "vmcloud_worker_restarts_total", "Times this process's job worker stopped and was restarted."
)
MAX_PAUSE = 10.0


class WorkerFailedError(RuntimeError):
    """No worker could run for longer than ``worker_give_up_seconds``."""


@dataclass
class WorkerHealth:
    """What ``/readyz`` reports about the worker of this process."""

    state: str = "starting"  # starting | running | reconnecting | failed | stopped
    since: float = field(default_factory=time.monotonic)
    error: str | None = None
    restarts: int = 0

    def set(self, state: str, error: str | None = None) -> None:
        if state != self.state:
            self.since = time.monotonic()
        self.state = state
        self.error = error
        WORKER_UP.set(1 if state == "running" else 0)

    @property
    def failed(self) -> bool:
        return self.state == "failed"


async def _database_answers(conninfo: str) -> bool:
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo, connect_timeout=5)
    except psycopg.Error:
        return False
    await conn.close()
    return True


async def _run_once(app: procrastinate.App, settings: Settings, health: WorkerHealth) -> None:
    async with app.open_async():
        await jobs.recover_stalled(
            app.job_manager, stalled_after=settings.job_stalled_after_seconds
        )
        health.set("running")
        log.info("worker.running", concurrency=settings.worker_concurrency)
        await app.run_worker_async(
            concurrency=settings.worker_concurrency,
            install_signal_handlers=False,
            shutdown_graceful_timeout=10,
            update_heartbeat_interval=settings.worker_heartbeat_seconds,
            stalled_worker_timeout=settings.job_stalled_after_seconds,
        )


async def supervise(
    app: procrastinate.App,
    *,
    settings: Settings,
    conninfo: str,
    health: WorkerHealth,
    exit_on_failure: bool,
) -> None:
    """Run a worker until cancelled (the graceful way to stop it), restarting it whenever it
    stops on its own. Raises :class:`WorkerFailedError` when ``exit_on_failure`` and no worker
    could run for ``settings.worker_give_up_seconds``."""
    pause = 1.0
    down_since: float | None = None
    while True:
        if await _database_answers(conninfo):
            started = time.monotonic()
            try:
                await _run_once(app, settings, health)
                error = "the worker stopped on its own (its database connection broke)"
            except asyncio.CancelledError:
                health.set("stopped")
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - started > 2 * MAX_PAUSE:  # it ran for a while: a new outage
                down_since, pause = None, 1.0
            health.restarts += 1
            WORKER_RESTARTS.inc()
            log.error("worker.stopped_unexpectedly", error=error, restarts=health.restarts)
        else:
            error = "the database is not reachable"
        now = time.monotonic()
        down_since = down_since or now
        if now - down_since >= settings.worker_give_up_seconds:
            log.critical("worker.failed", error=error, down_seconds=round(now - down_since, 1))
            health.set("failed", error)
            if exit_on_failure:
                raise WorkerFailedError(error)
        elif not health.failed:
            health.set("reconnecting", error)
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE)


def heartbeat_age(engine: Engine) -> float | None:
    """Seconds since the freshest heartbeat of any job worker (by the database's clock), or
    None when no worker is registered. A worker that stopped cleanly has unregistered; one
    that was killed stays until another worker prunes it as stalled."""
    with engine.connect() as conn:
        age = conn.execute(
            text(
                "SELECT extract(epoch FROM now() - max(last_heartbeat)) FROM procrastinate_workers"
            )
        ).scalar()
    return None if age is None else max(float(age), 0.0)
