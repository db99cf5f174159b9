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

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import procrastinate
from procrastinate import PsycopgConnector
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from vmcloud.audit import service as audit
from vmcloud.config import Settings
from vmcloud.core.mail import Mailer

# Modules that declare tasks; the worker imports them before it starts.
TASK_MODULES = [
    "vmcloud.accounts.tasks",
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


def defer(
    db: Session,
    task: procrastinate.tasks.Task[Any, Any, Any],
    *,
    lock: str | None = None,
    **kwargs: Any,
) -> int:
    """Queue ``task(**kwargs)`` in ``db``'s transaction; returns the job id. Jobs sharing a
    ``lock`` run one at a time, in queue order.

    Arguments must be JSON values; secrets never go into them (job rows are readable by
    operators), so tasks receive ids and look the rest up.
    """
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


# A worker that has not sent a heartbeat for this long is gone (procrastinate workers beat
# every 10 s by default).
STALLED_AFTER_SECONDS = 60


def instance_lock(instance_id: object) -> str:
    return f"instance:{instance_id}"


def has_active(db: Session, *, lock: str) -> bool:
    """A job with ``lock`` is waiting, or running on a worker that is alive."""
    return bool(
        db.execute(
            text(
                """
                SELECT EXISTS (
                    SELECT 1 FROM procrastinate_jobs j
                    LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
                     WHERE j.lock = :lock
                       AND (j.status = 'todo'
                            OR (j.status = 'doing' AND w.last_heartbeat
                                > now() - make_interval(secs => :stalled)))
                )
                """
            ),
            {"lock": lock, "stalled": STALLED_AFTER_SECONDS},
        ).scalar_one()
    )


def fail_stalled(db: Session, *, lock: str) -> int:
    """Mark failed the jobs with ``lock`` whose worker died while running them, so the lock
    (and the jobs queued behind it) is free again; returns how many."""
    result = db.execute(
        text(
            """
            UPDATE procrastinate_jobs j SET status = 'failed'
             WHERE j.lock = :lock AND j.status = 'doing'
               AND NOT EXISTS (
                   SELECT 1 FROM procrastinate_workers w
                    WHERE w.id = j.worker_id
                      AND w.last_heartbeat > now() - make_interval(secs => :stalled))
            """
        ),
        {"lock": lock, "stalled": STALLED_AFTER_SECONDS},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


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
    with current.session_factory() as db:
        audit.bind(db, audit.AuditContext())  # the system acts
        try:
            yield db, current
            db.commit()
        except BaseException:
            db.rollback()
            raise


def libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def worker_app(database_url: str, concurrency: int) -> Iterator[procrastinate.App]:
    """The task app, bound for the duration of the block to a connection pool on
    ``database_url`` (open it with ``open_async()``). Periodic tasks defer through it too."""
    connector = PsycopgConnector(
        conninfo=libpq_url(database_url), min_size=1, max_size=concurrency + 2
    )
    with app.replace_connector(connector) as bound:
        yield bound
