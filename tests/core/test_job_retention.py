"""Finished jobs do not pile up: succeeded ones go after three days, failed, cancelled and
aborted ones after thirty, jobs still to run are never touched, and the latest run of a
periodic task goes too (procrastinate's trigger drops the reference to it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from vmcloud.core import jobs

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _job(connection: Connection, status: str, *, days_ago: float) -> int:
    """A job in ``status`` whose every event is ``days_ago`` old."""
    job_id = int(
        connection.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status)"
                " VALUES ('q', 'ops.example', CAST(:args AS jsonb), 'todo') RETURNING id"
            ),
            {"args": json.dumps({})},
        ).scalar_one()
    )
    if status != "todo":
        connection.execute(
            text(
                "UPDATE procrastinate_jobs SET status = CAST(:s AS procrastinate_job_status)"
                " WHERE id = :id"
            ),
            {"s": status, "id": job_id},
        )
    connection.execute(
        text("UPDATE procrastinate_events SET at = :at WHERE job_id = :id"),
        {"at": NOW - timedelta(days=days_ago), "id": job_id},
    )
    return job_id


def _left(connection: Connection, ids: list[int]) -> set[int]:
    rows = connection.execute(
        text("SELECT id FROM procrastinate_jobs WHERE id = ANY(:ids)"), {"ids": ids}
    )
    return {int(r[0]) for r in rows}


def test_each_status_is_kept_for_its_retention(connection: Connection, db: Session) -> None:
    old_ok = _job(connection, "succeeded", days_ago=4)
    recent_ok = _job(connection, "succeeded", days_ago=2)
    failed_10 = _job(connection, "failed", days_ago=10)
    failed_40 = _job(connection, "failed", days_ago=40)
    cancelled_40 = _job(connection, "cancelled", days_ago=40)
    waiting = _job(connection, "todo", days_ago=60)
    running = _job(connection, "doing", days_ago=60)
    failed_before = jobs.failed_count(db=db)

    assert jobs.purge_finished(db=db, now=NOW) >= 3
    assert _left(
        connection,
        [old_ok, recent_ok, failed_10, failed_40, cancelled_40, waiting, running],
    ) == {recent_ok, failed_10, waiting, running}
    assert jobs.failed_count(db=db) == failed_before - 1
    events = connection.execute(
        text("SELECT count(*) FROM procrastinate_events WHERE job_id = ANY(:ids)"),
        {"ids": [old_ok, failed_40, cancelled_40]},
    ).scalar_one()
    assert events == 0


def test_a_job_an_event_has_touched_lately_is_kept(connection: Connection, db: Session) -> None:
    """Retention counts from the job's last event (a retried job ran again yesterday)."""
    retried = _job(connection, "succeeded", days_ago=10)
    connection.execute(
        text("UPDATE procrastinate_events SET at = :at WHERE id = ("
             "SELECT max(id) FROM procrastinate_events WHERE job_id = :id)"),
        {"at": NOW - timedelta(days=1), "id": retried},
    )  # fmt: skip
    jobs.purge_finished(db=db, now=NOW)
    assert _left(connection, [retried]) == {retried}


def test_the_latest_run_of_a_periodic_task_goes_too(connection: Connection, db: Session) -> None:
    monthly = _job(connection, "succeeded", days_ago=20)
    connection.execute(
        text(
            "INSERT INTO procrastinate_periodic_defers"
            " (task_name, periodic_id, defer_timestamp, job_id)"
            " VALUES ('ops.example', 'monthly', 1, :id)"
        ),
        {"id": monthly},
    )
    jobs.purge_finished(db=db, now=NOW)
    assert _left(connection, [monthly]) == set()
    reference = connection.execute(
        text("SELECT job_id FROM procrastinate_periodic_defers WHERE periodic_id = 'monthly'")
    ).scalar_one()
    assert reference is None


def test_a_backlog_goes_in_batches(connection: Connection, db: Session) -> None:
    ids = [_job(connection, "succeeded", days_ago=5) for _ in range(5)]
    assert jobs.purge_finished(db=db, now=NOW, limit=2) == 2
    assert len(_left(connection, ids)) == 3
    assert jobs.purge_finished(db=db, now=NOW, limit=2) == 2
    assert jobs.purge_finished(db=db, now=NOW, limit=2) >= 1
    assert _left(connection, ids) == set()
