"""Jobs whose worker died mid-run: found by procrastinate's heartbeat-based stalled-jobs query
and retried or failed by their task's own policy, so no lock (``billing-run``, an instance's)
stays held for good. These tests commit to a database of their own."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from vmcloud.config import Settings
from vmcloud.core import jobs
from vmcloud.db.session import make_engine


@pytest.fixture
def engine_(settings: Settings, fresh_database_url: str) -> Iterator[Engine]:
    engine = make_engine(settings, fresh_database_url)
    yield engine
    engine.dispose()


def _all_tasks() -> dict[str, Any]:
    for module in jobs.TASK_MODULES:
        importlib.import_module(module)
    return dict(jobs.app.tasks)


def test_every_task_declares_what_a_stall_does_to_it() -> None:
    missing = [name for name in _all_tasks() if jobs.stall_policy(name) is None]
    assert missing == [], f"declare @jobs.on_stall(...) on {missing}"


def test_billing_and_mail_are_retried_and_maintenance_failed() -> None:
    _all_tasks()
    assert jobs.stall_policy("billing.run") is jobs.OnStall.RETRY
    assert jobs.stall_policy("accounts.send_verification_email") is jobs.OnStall.RETRY
    assert jobs.stall_policy("compute.provision_instance") is jobs.OnStall.RETRY
    assert jobs.stall_policy("compute.reconcile") is jobs.OnStall.FAIL


def _worker(engine: Engine, *, seconds_ago: int) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO procrastinate_workers (last_heartbeat)"
                    " VALUES (now() - make_interval(secs => :s)) RETURNING id"
                ),
                {"s": seconds_ago},
            ).scalar_one()
        )


def _running_job(
    engine: Engine, task: str, *, worker: int | None, lock: str | None = None, attempts: int = 0
) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO procrastinate_jobs"
                    " (queue_name, task_name, lock, args, status, attempts, worker_id)"
                    " VALUES ('q', :task, :lock, CAST(:args AS jsonb), 'doing', :attempts, :w)"
                    " RETURNING id"
                ),
                {
                    "task": task,
                    "lock": lock,
                    "args": json.dumps({}),
                    "attempts": attempts,
                    "w": worker,
                },
            ).scalar_one()
        )


def _status(engine: Engine, job_id: int) -> tuple[str, int]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT status::text, attempts FROM procrastinate_jobs WHERE id = :id"),
            {"id": job_id},
        ).one()
    return str(row[0]), int(row[1])


def _recover(url: str, stalled_after: float = 60) -> list[jobs.Recovery]:
    async def run() -> list[jobs.Recovery]:
        with jobs.worker_app(url, 1) as app:
            async with app.open_async():
                return await jobs.recover_stalled(app.job_manager, stalled_after=stalled_after)

    return asyncio.run(run())


def test_jobs_of_dead_workers_are_retried_or_failed_by_policy(
    engine_: Engine, fresh_database_url: str
) -> None:
    _all_tasks()
    dead = _worker(engine_, seconds_ago=3600)
    alive = _worker(engine_, seconds_ago=1)
    billing = _running_job(engine_, "billing.run", worker=dead, lock="billing-run")
    mail = _running_job(engine_, "accounts.send_verification_email", worker=dead)
    mail_spent = _running_job(engine_, "accounts.send_verification_email", worker=dead, attempts=7)
    reconcile = _running_job(engine_, "compute.reconcile", worker=dead)
    orphaned = _running_job(engine_, "support.send", worker=None)  # its worker was pruned
    busy = _running_job(engine_, "billing.verify_ledger", worker=alive)

    outcomes = {r.job_id: r.outcome for r in _recover(fresh_database_url)}

    assert outcomes == {
        billing: "retried",
        mail: "retried",
        mail_spent: "failed",  # DEFAULT_RETRY allows 8 attempts; this was the 8th
        reconcile: "failed",
        orphaned: "retried",
    }
    assert _status(engine_, billing) == ("todo", 1)
    assert _status(engine_, mail) == ("todo", 1)
    assert _status(engine_, mail_spent)[0] == "failed"
    assert _status(engine_, reconcile)[0] == "failed"
    assert _status(engine_, busy) == ("doing", 0)  # a live worker's job is its own
    # A second pass finds nothing more to do.
    assert _recover(fresh_database_url) == []


def test_a_task_without_retries_of_its_own_is_retried_a_bounded_number_of_times(
    engine_: Engine, fresh_database_url: str
) -> None:
    _all_tasks()
    dead = _worker(engine_, seconds_ago=3600)
    job = _running_job(
        engine_, "billing.run", worker=dead, lock="billing-run", attempts=jobs.STALL_MAX_ATTEMPTS
    )
    assert [r.outcome for r in _recover(fresh_database_url)] == ["failed"]
    assert _status(engine_, job)[0] == "failed"


def test_the_heartbeat_threshold_is_respected(engine_: Engine, fresh_database_url: str) -> None:
    _all_tasks()
    quiet = _worker(engine_, seconds_ago=20)
    job = _running_job(engine_, "billing.run", worker=quiet, lock="billing-run")
    assert _recover(fresh_database_url, stalled_after=60) == []
    assert _status(engine_, job) == ("doing", 0)
    assert [r.job_id for r in _recover(fresh_database_url, stalled_after=10)] == [job]
