"""Housekeeping jobs that belong to no single domain."""

from __future__ import annotations

from vmcloud.core import jobs
from vmcloud.core.logging import get_logger
from vmcloud.core.ratelimit import purge_old_counters

log = get_logger(__name__)


@jobs.app.periodic(cron="23 * * * *", periodic_id="purge-rate-limits")
@jobs.app.task(name="ops.purge_rate_limits", queue="maintenance")
def purge_rate_limits(timestamp: int) -> None:
    with jobs.unit_of_work() as (db, _):
        removed = purge_old_counters(db=db)
    log.info("rate_limits.purged", removed=removed, scheduled_for=timestamp)
