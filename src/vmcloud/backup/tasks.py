"""The backup schedule, in the worker.

Every ten minutes :func:`scheduled_backup` decides: the first backup as soon as there is none
(on a new installation, within minutes of the first start); at the configured hour (UTC), a
full backup on the 1st of the month (``monthly``) and a differential on every other day
(``daily``), unless one was already taken since; a missed hour is caught up on the next tick.
pgBackRest expires old backups after each by the retention settings. A repository that cannot
be read is a failed run and an alert, once a day. ``verify`` runs weekly and the restore drill
monthly, each after the day's backup; a failure of either is emailed to every active staff
member.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.accounts.models import STAFF_ROLES, User
from vmcloud.backup import drill, service
from vmcloud.backup.models import BackupRun
from vmcloud.core import jobs
from vmcloud.core.clock import utcnow
from vmcloud.core.logging import get_logger
from vmcloud.core.mail import Email
from vmcloud.db.pgbackrest import PgBackRestError
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import (
    BACKUP_HOUR,
    BACKUP_RETENTION_DIFF,
    BACKUP_RETENTION_FULL,
)

log = get_logger(__name__)


def due(
    *, now: datetime, hour: int, latest: datetime | None, latest_full: datetime | None
) -> service.Kind | None:
    """Which backup the schedule wants at ``now``, given when the latest backup and the latest
    full one started (a manual backup counts; a differential does not stand in for the monthly
    full). Measured against the last scheduled instants, so that a missed hour (the worker
    down, a failed run) is caught up on the next tick: the daily one at ``hour`` (today's if
    passed, else yesterday's), the monthly one at ``hour`` on the 1st."""
    if latest is None:
        return "monthly"
    daily = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if daily > now:
        daily -= timedelta(days=1)
    monthly = daily.replace(day=1)  # on the 1st before the hour, ``daily`` is last month's
    if latest_full is None or latest_full < monthly:
        return "monthly"
    return "daily" if latest < daily else None


@jobs.on_stall(jobs.OnStall.FAIL)
@jobs.app.periodic(cron="*/10 * * * *", periodic_id="backup-schedule")
@jobs.app.task(name="backup.scheduled", queue="backup", lock="backup")
def scheduled_backup(timestamp: int) -> None:
    runtime = jobs.runtime()
    repo = service.embedded_repository(runtime.settings)
    if repo is None:
        return  # an external database is backed up on its own host
    with jobs.unit_of_work() as (db, _):
        hour = site_settings.get(db, BACKUP_HOUR)
        retention = service.Retention(
            full=site_settings.get(db, BACKUP_RETENTION_FULL),
            diff=site_settings.get(db, BACKUP_RETENTION_DIFF),
        )
    try:
        found = service.inventory(repo)
    except PgBackRestError as exc:
        _unreadable(str(exc))
        return
    latest, latest_full = found.latest(), found.latest(type_="full")
    kind = due(
        now=utcnow(),
        hour=hour,
        latest=latest.started_at if latest else None,
        latest_full=latest_full.started_at if latest_full else None,
    )
    if kind is None:
        return
    outcome = service.take(
        repo=repo,
        data_dir=runtime.settings.data_dir,
        kind=kind,
        full=kind == "monthly",
        retention=retention,
    )
    with jobs.unit_of_work() as (db, _):
        service.record(db=db, outcome=outcome)
        if outcome.error:
            _alert_staff(db, "A scheduled backup failed", outcome.error)


@jobs.on_stall(jobs.OnStall.FAIL)
@jobs.app.periodic(cron="30 5 * * 0", periodic_id="backup-verify")
@jobs.app.task(name="backup.verify", queue="backup", lock="backup")
def weekly_verify(timestamp: int) -> None:
    repo = service.embedded_repository(jobs.runtime().settings)
    if repo is None:
        return
    result = service.verify(repo)
    log.info("backup.verified", ok=result.ok, problems=result.problems)
    if not result.ok:
        with jobs.unit_of_work() as (db, _):
            _alert_staff(
                db, "The backup repository failed verification", "\n".join(result.problems)
            )


@jobs.on_stall(jobs.OnStall.FAIL)
@jobs.app.periodic(cron="0 6 2 * *", periodic_id="backup-drill")
@jobs.app.task(name="backup.drill", queue="backup", lock="backup")
def monthly_drill(timestamp: int) -> None:
    runtime = jobs.runtime()
    repo = service.embedded_repository(runtime.settings)
    if repo is None or not runtime.settings.database_url:
        return
    result = drill.run(repo=repo, conninfo=jobs.libpq_url(runtime.settings.database_url))
    with jobs.unit_of_work() as (db, _):
        drill.record(db=db, result=result)
        if not result.passed:
            _alert_staff(db, "The monthly restore drill failed", result.reason or "")


UNREADABLE = "The backup repository cannot be read"


def _unreadable(error: str) -> None:
    """A failed run and an alert, at most once a day (the schedule ticks every ten minutes)."""
    now = utcnow()
    with jobs.unit_of_work() as (db, _):
        already = db.scalars(
            select(BackupRun.id).where(
                BackupRun.outcome == "failed",
                BackupRun.error.startswith(UNREADABLE),
                BackupRun.finished_at > now - timedelta(days=1),
            )
        ).first()
        if already is not None:
            log.warning("backup.repository_unreadable", error=error)
            return
        detail = f"{UNREADABLE}: {error}"
        service.record(
            db=db,
            outcome=service.Outcome("daily", "diff", now, now, None, detail),
        )
        _alert_staff(db, UNREADABLE, detail)


def _alert_staff(db: Session, subject: str, detail: str) -> None:
    staff = db.scalars(
        select(User.email).where(User.role.in_(STAFF_ROLES), User.status == "active")
    ).all()
    for email in staff:
        jobs.defer(db, "backup.alert", to=email, subject=subject, detail=detail[:4000])


@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.task(name="backup.alert", queue="mail", retry=jobs.DEFAULT_RETRY)
def alert(to: str, subject: str, detail: str) -> None:
    runtime = jobs.runtime()
    body = (
        f'{detail}\n\nSee `vmcloud backup list` on the server and docs/operations.md, "Backups".\n'
    )
    runtime.mailer.send(Email(to=to, subject=f"[VMCloud] {subject}", text=body))
