"""Durable background jobs on PostgreSQL (procrastinate).

- Tasks are declared on the one procrastinate ``app`` below, in each domain's ``tasks.py``.
- Jobs are queued with :func:`defer` *inside the caller's database transaction*: the job exists
  exactly when the rows that asked for it commit, and never otherwise.
- A worker runs inside ``vmcloud up`` and alone as ``vmcloud worker``; any number of workers on
  any number of machines share the queue. A job survives the crash of any process: it stays in
  ``procrastinate_jobs`` until a worker finishes it.
- Task bodies open their unit of work with :func:`unit_of_work`, which commits once at the end,
  as a request does.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import procrastinate
import procrastinate.manager
from procrastinate import PsycopgConnector
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from vmcloud.config import Settings
from vmcloud.core.logging import get_logger
from vmcloud.core.mail import Mailer
from vmcloud.db import session

log = get_logger(__name__)
STALLED_JOBS = Counter(
    "vmcloud_stalled_jobs_total",
    "Jobs found running on a dead worker, by task and what was done with them.",
    ["task", "outcome"],
)

# Modules that declare tasks; the worker imports them before it starts.
TASK_MODULES = [
    "vmcloud.accounts.tasks",
    "vmcloud.backup.tasks",
    "vmcloud.billing.tasks",
    "vmcloud.compute.tasks",
    "vmcloud.ops.tasks",
    "vmcloud.support.tasks",
]

app = procrastinate.App(connector=PsycopgConnector(), import_paths=TASK_MODULES)

# Retry transient failures (SMTP down, hypervisor busy) with growing waits, then give up and
# leave the job as `failed` for an operator to look at.
DEFAULT_RETRY = procrastinate.RetryStrategy(max_attempts=8, exponential_wait=4)

_DEFER = text(
    """
    SELECT procrastinate_defer_jobs_v1(ARRAY[
        ROW(:queue, :task, :priority, :lock, NULL, CAST(:args AS jsonb), NULL)
    ]::procrastinate_job_to_defer_v1[])
    """
)


def task_named(name: str) -> procrastinate.tasks.Task[Any, Any, Any]:
    """The registered task called ``name`` (every task module is imported first)."""
    app.perform_import_paths()  # type: ignore[no-untyped-call]
    try:
        return app.tasks[name]
    except KeyError:
        raise LookupError(f"no task is registered as {name!r}") from None


def defer(
    db: Session,
    task: procrastinate.tasks.Task[Any, Any, Any] | str,
    *,
    lock: str | None = None,
    **kwargs: Any,
) -> int:
    """Queue ``task(**kwargs)`` in ``db``'s transaction; returns the job id. Jobs sharing a
    ``lock`` run one at a time, in queue order. A service names its own domain's task
    (``"compute.provision_instance"``) rather than importing the module whose tasks call it.

    Arguments must be JSON values; secrets never go into them (job rows are readable by
    operators), so tasks receive ids and look the rest up.
    """
    if isinstance(task, str):
        task = task_named(task)
    job_ids = db.execute(
        _DEFER,
        {
            "queue": task.queue,
            "task": task.name,
            "priority": task.priority,
            "lock": lock,
            "args": json.dumps(kwargs),
        },
    ).scalar_one()
    return int(job_ids[0])


def instance_lock(instance_id: object) -> str:
    return f"instance:{instance_id}"


def has_active(db: Session, *, lock: str) -> bool:
    """A job with ``lock`` is waiting or running. A job whose worker died still counts until
    :func:`recover_stalled` has decided its fate (retried, or failed by its task's policy)."""
    return bool(
        db.execute(
            text(
                """
                SELECT EXISTS (
                    SELECT 1 FROM procrastinate_jobs
                     WHERE lock = :lock AND status IN ('todo', 'doing'))
                """
            ),
            {"lock": lock},
        ).scalar_one()
    )


class OnStall(enum.Enum):
    """What happens to a job whose worker died while running it (see docs/jobs.md)."""

    RETRY = "retry"  # run it again: the task is idempotent, or at least once beats never
    FAIL = "fail"  # mark it failed: a periodic successor or the reconciler does its work


_ON_STALL: dict[str, OnStall] = {}
# Retries after a stall for tasks with no retry strategy of their own.
STALL_MAX_ATTEMPTS = 3

TaskT = TypeVar("TaskT", bound="procrastinate.tasks.Task[Any, Any, Any]")


def on_stall(policy: OnStall) -> Callable[[TaskT], TaskT]:
    """Declare, next to a task, what a stall does to its jobs. Every task declares one."""

    def register(task: TaskT) -> TaskT:
        _ON_STALL[task.name] = policy
        return task

    return register


def stall_policy(task_name: str) -> OnStall | None:
    if task_name.startswith(("builtin:", "procrastinate.")):
        return OnStall.FAIL  # procrastinate's own housekeeping, periodic when used at all
    return _ON_STALL.get(task_name)


@dataclass(frozen=True)
class Recovery:
    job_id: int
    task_name: str
    outcome: str  # "retried" or "failed"


def _max_attempts(task_name: str) -> int:
    task = app.tasks.get(task_name)
    strategy = task.retry_strategy if task is not None else None
    limit = getattr(strategy, "max_attempts", None)
    return int(limit) if limit else STALL_MAX_ATTEMPTS


async def recover_stalled(
    manager: procrastinate.manager.JobManager, *, stalled_after: float
) -> list[Recovery]:
    """Find the jobs whose worker stopped sending heartbeats (procrastinate's stalled-jobs
    query) and retry or fail each by its task's policy. Jobs holding a lock free it either way.
    Safe to run on several workers at once: a job another worker already moved is skipped."""
    app.perform_import_paths()  # type: ignore[no-untyped-call]  # tasks declare their policy
    done: list[Recovery] = []
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
        assert job.id is not None
        policy = stall_policy(job.task_name)
        if policy is None:
            log.error("jobs.stalled_unknown_task", job_id=job.id, task=job.task_name)
            policy = OnStall.FAIL
        retry = policy is OnStall.RETRY and job.attempts + 1 < _max_attempts(job.task_name)
        try:
            if retry:
                await manager.retry_job_by_id_async(job.id, retry_at=datetime.now(UTC))
            else:
                await manager.finish_job_by_id_async(
                    job.id, status=procrastinate.jobs.Status.FAILED, delete_job=False
                )
        except Exception as exc:  # moved by another worker's pass in the meantime
            log.info("jobs.stalled_skipped", job_id=job.id, error=str(exc))
            continue
        outcome = "retried" if retry else "failed"
        STALLED_JOBS.labels(task=job.task_name, outcome=outcome).inc()
        log.warning(
            "jobs.stalled_recovered",
            job_id=job.id,
            task=job.task_name,
            outcome=outcome,
            attempts=job.attempts + 1,
        )
        done.append(Recovery(job.id, job.task_name, outcome))
    return done


@dataclass
class Runtime:
    """What task bodies need from the process that runs them."""

    settings: Settings
    session_factory: sessionmaker[Session]
    mailer: Mailer


_runtime: Runtime | None = None


def configure(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the job runtime is not configured; start a worker with vmcloud")
    return _runtime


@contextmanager
def unit_of_work() -> Iterator[tuple[Session, Runtime]]:
    """A session for one job run: commits when the body returns, rolls back if it raises."""
    current = runtime()
    with session.unit_of_work(current.session_factory) as db:  # the system acts
        yield db, current


def libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def worker_app(database_url: str, concurrency: int) -> Iterator[procrastinate.App]:
    """The task app, bound for the duration of the block to a connection pool on
    ``database_url`` (open it with ``open_async()``). Periodic tasks defer through it too."""
    connector = PsycopgConnector(
        conninfo=libpq_url(database_url),
        min_size=1,
        max_size=concurrency + 2,
        # Waiting longer for a connection only delays noticing that the database is gone
        # (core/worker.py then restarts the worker).
        timeout=5,
    )
    with app.replace_connector(connector) as bound:
        yield bound


def failed_count(*, db: Session) -> int:
    """Jobs that ended ``failed`` and are still kept (an operator looks at them)."""
    return int(
        db.execute(
            text("SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'")
        ).scalar_one()
    )


# How long finished jobs stay in procrastinate's table: succeeded ones only say that work was
# done (the logs say more); failed, cancelled and aborted ones are kept for an operator.
KEEP_SUCCEEDED = timedelta(days=3)
KEEP_UNSUCCESSFUL = timedelta(days=30)
PURGE_BATCH = 5000

# procrastinate's own delete_old_jobs joins every job to all its events and sorts them in one
# statement, with no batches and one retention for the statuses asked for. Here each status has
# its retention and a pass deletes at most ``limit`` jobs. The status is checked again on the
# row being deleted: a failed job an operator queues again meanwhile is not removed.
# (procrastinate's own trigger clears a periodic task's reference to a job it deletes.)
_PURGE = text(
    """
    DELETE FROM procrastinate_jobs
    WHERE id IN (
        SELECT job.id FROM procrastinate_jobs AS job
        WHERE (job.status = 'succeeded' AND :ok_before > ALL (
                SELECT event.at FROM procrastinate_events AS event WHERE event.job_id = job.id))
            OR (job.status IN ('failed', 'cancelled', 'aborted') AND :bad_before > ALL (
                SELECT event.at FROM procrastinate_events AS event WHERE event.job_id = job.id))
        ORDER BY job.id
        LIMIT :limit
    )
    AND status IN ('succeeded', 'failed', 'cancelled', 'aborted')
    """
)


def purge_finished(*, db: Session, now: datetime, limit: int = PURGE_BATCH) -> int:
    """Delete up to ``limit`` finished jobs (and, by cascade, their events) whose last event
    is older than their status's retention; the number deleted. Call again while it returns
    ``limit``."""
    result = db.execute(
        _PURGE,
        {"ok_before": now - KEEP_SUCCEEDED, "bad_before": now - KEEP_UNSUCCESSFUL, "limit": limit},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
