"""Backup metrics for ``/metrics``, read from the database when scraped: the backups and
drills run in the worker, and any API process must report them alike."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Gauge
from sqlalchemy import Engine, func, select, text

from vmcloud.backup.models import BackupDrill, BackupRun
from vmcloud.core.logging import get_logger

log = get_logger(__name__)

LAST_BACKUP = Gauge(
    "vmcloud_backup_last_success_timestamp_seconds",
    "When the last successful backup of each kind finished (Unix time).",
    ["kind"],
)
BACKUP_SIZE = Gauge(
    "vmcloud_backup_size_bytes",
    "The database's size at the last successful backup of each kind.",
    ["kind"],
)
BACKUP_STORED = Gauge(
    "vmcloud_backup_stored_bytes",
    "What the last successful backup of each kind added to the repository (compressed).",
    ["kind"],
)
ARCHIVE_FAILURES = Gauge(
    "vmcloud_backup_archive_failures",
    "WAL segments the archiver failed to archive since the statistics were reset.",
)
ARCHIVE_FAILING = Gauge(
    "vmcloud_backup_archive_failing",
    "1 when the WAL archiver's last attempt failed (point-in-time recovery is falling behind).",
)
ARCHIVE_LAST = Gauge(
    "vmcloud_backup_archive_last_success_timestamp_seconds",
    "When the last WAL segment was archived (Unix time).",
)
DRILL_LAST = Gauge(
    "vmcloud_backup_drill_last_timestamp_seconds", "When the last restore drill ran (Unix time)."
)
DRILL_PASSED = Gauge("vmcloud_backup_drill_passed", "1 when the last restore drill passed.")
DRILL_RTO = Gauge(
    "vmcloud_backup_drill_rto_seconds",
    "The last restore drill's time from the start of the restore until the copy took writes.",
)
DRILL_RPO = Gauge(
    "vmcloud_backup_drill_rpo_seconds",
    "Age of the newest archived WAL when the last restore drill began.",
)

_ARCHIVER = text(
    """
    SELECT failed_count,
           COALESCE(last_failed_time > COALESCE(last_archived_time, '-infinity'), false),
           EXTRACT(EPOCH FROM last_archived_time)
      FROM pg_stat_archiver
    """
)


def refresh(engine: Engine) -> None:
    """Set the gauges from the database; leaves them as they were if it cannot be read."""
    try:
        with engine.connect() as conn:
            latest = (
                select(BackupRun.kind, func.max(BackupRun.finished_at).label("at"))
                .where(BackupRun.outcome == "ok")
                .group_by(BackupRun.kind)
                .subquery()
            )
            runs = conn.execute(
                select(BackupRun).join(
                    latest,
                    (BackupRun.kind == latest.c.kind) & (BackupRun.finished_at == latest.c.at),
                )
            ).all()
            failed, failing, archived_at = conn.execute(_ARCHIVER).one()
            drill = conn.execute(
                select(BackupDrill).order_by(BackupDrill.started_at.desc()).limit(1)
            ).first()
    except Exception as exc:  # a scrape must answer even when the database does not
        log.warning("backup.metrics_unavailable", error=type(exc).__name__)
        return
    for run in runs:
        LAST_BACKUP.labels(kind=run.kind).set(_epoch(run.finished_at))
        BACKUP_SIZE.labels(kind=run.kind).set(run.size_bytes or 0)
        BACKUP_STORED.labels(kind=run.kind).set(run.stored_bytes or 0)
    ARCHIVE_FAILURES.set(failed or 0)
    ARCHIVE_FAILING.set(1 if failing else 0)
    if archived_at is not None:
        ARCHIVE_LAST.set(float(archived_at))
    if drill is not None:
        DRILL_LAST.set(_epoch(drill.started_at))
        DRILL_PASSED.set(1 if drill.outcome == "passed" else 0)
        DRILL_RTO.set(drill.rto_seconds or 0)
        DRILL_RPO.set(drill.rpo_seconds or 0)


def _epoch(naive_utc: datetime) -> float:
    return naive_utc.replace(tzinfo=UTC).timestamp()
