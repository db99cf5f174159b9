"""Housekeeping jobs that belong to no single domain."""

from __future__ import annotations

from datetime import UTC, datetime

from procrastinate import JobContext

from vmcloud.core import idempotency, jobs
from vmcloud.core.logging import get_logger
from vmcloud.core.ratelimit import purge_old_counters

log = get_logger(__name__)


@jobs.on_stall(jobs.OnStall.FAIL)
@jobs.app.periodic(cron="23 * * * *", periodic_id="purge-rate-limits")
@jobs.app.task(name="ops.purge_rate_limits", queue="maintenance")
def purge_rate_limits(timestamp: int) -> None:
    with jobs.unit_of_work() as (db, _):
        removed = purge_old_counters(db=db)
    log.info("rate_limits.purged", removed=removed, scheduled_for=timestamp)


@jobs.on_stall(jobs.OnStall.FAIL)
@jobs.app.periodic(cron="41 * * * *", periodic_id="purge-idempotency-keys")
@jobs.app.task(name="ops.purge_idempotency_keys", queue="maintenance")
def purge_idempotency_keys(timestamp: int) -> None:
    with jobs.unit_of_work() as (db, _):
        removed = idempotency.purge_expired(db=db)
    log.info("idempotency_keys.purged", removed=removed)


@jobs.on_stall(jobs.OnStall.FAIL)
@jobs.app.periodic(cron="53 * * * *", periodic_id="purge-finished-jobs")
@jobs.app.task(name="ops.purge_finished_jobs", queue="maintenance")
def purge_finished_jobs(timestamp: int) -> None:
    """Finished jobs past their retention (core/jobs.py), a batch per transaction: the
    periodic tasks alone finish about ten thousand jobs a day."""
    removed = 0
    while True:
        with jobs.unit_of_work() as (db, _):
            batch = jobs.purge_finished(db=db, now=datetime.now(UTC))
        removed += batch
        if batch < jobs.PURGE_BATCH:
            break
    log.info("jobs.purged", removed=removed, scheduled_for=timestamp)


# Every 15 s (the sixth cron field is seconds): a dead worker's jobs wait at most
# job_stalled_after_seconds + 15 s. A stalled pass is simply failed: the next one does its work.
@jobs.on_stall(jobs.OnStall.FAIL)
@jobs.app.periodic(cron="* * * * * */15", periodic_id="recover-stalled-jobs")
@jobs.app.task(name="ops.recover_stalled_jobs", queue="maintenance", pass_context=True)
async def recover_stalled_jobs(context: JobContext, timestamp: int) -> None:
    """The one periodic place where jobs of dead workers are retried or failed (every worker
    also runs a pass when it starts)."""
    await jobs.recover_stalled(
        context.app.job_manager, stalled_after=jobs.runtime().settings.job_stalled_after_seconds
    )
