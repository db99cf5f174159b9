"""The backup schedule, in the worker.

Every ten minutes :func:`scheduled_backup` decides: the first backup as soon as there is none
(on a new installation, within minutes of the first start); at the configured hour (UTC), a
full backup on the 1st of the month (``monthly``) and a differential on every other day
(``daily``), unless one was already taken that day. pgBackRest expires old backups after each
by the retention settings. ``verify`` runs weekly and the restore drill monthly, each after the
day's backup; a failure of either is emailed to every active staff member.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.accounts.models import STAFF_ROLES, User
from vmcloud.backup import drill, service
from vmcloud.core import jobs
from vmcloud.core.clock import utcnow
from vmcloud.core.logging import get_logger
from vmcloud.core.mail import Email
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import (
    BACKUP_HOUR,
    BACKUP_RETENTION_DIFF,
    BACKUP_RETENTION_FULL,
)

log = get_logger(__name__)


def due(*, now: datetime, hour: int, latest_start: datetime | None) -> service.Kind | None:
    """Which backup the schedule wants at ``now``, if any."""
    if latest_start is None:
        return "monthly"
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if now.hour != hour or latest_start >= today.replace(hour=hour):
        return None
    return "monthly" if now.day == 1 else "daily"


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
    latest = service.inventory(repo).latest()
    kind = due(now=utcnow(), hour=hour, latest_start=latest.started_at if latest else None)
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
