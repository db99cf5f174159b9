"""The schedule's decisions, retention on a scaled-down schedule, and the problems listed."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.backup.conftest import Platform
from vmcloud.backup import metrics, service, tasks
from vmcloud.backup.models import BackupRun
from vmcloud.backup.tasks import due
from vmcloud.core import jobs
from vmcloud.core.clock import utcnow
from vmcloud.core.mail import make_mailer


@pytest.mark.parametrize(
    ("now", "latest", "latest_full", "wanted"),
    [
        ("2026-12-05 13:00", None, None, "monthly"),  # the first backup at once
        ("2026-12-01 02:10", "2026-11-30 02:00", "2026-11-01 02:00", "monthly"),  # the 1st
        ("2026-12-01 02:20", "2026-12-01 02:05", "2026-11-01 02:00", "monthly"),  # after a diff
        ("2026-12-01 02:20", "2026-12-01 02:10", "2026-12-01 02:10", None),  # taken
        ("2026-12-05 02:10", "2026-12-04 02:00", "2026-12-01 02:00", "daily"),
        ("2026-12-05 02:20", "2026-12-05 02:01", "2026-12-01 02:00", None),  # taken
        ("2026-12-05 01:50", "2026-12-04 02:00", "2026-12-01 02:00", None),  # before the hour
        ("2026-12-05 03:10", "2026-12-05 02:01", "2026-12-01 02:00", None),  # normal day
        ("2026-12-05 09:40", "2026-12-04 02:00", "2026-12-01 02:00", "daily"),  # missed hour
        ("2026-12-06 01:00", "2026-12-04 02:00", "2026-12-01 02:00", "daily"),  # missed day
        ("2026-12-02 10:00", "2026-11-30 02:00", "2026-11-01 02:00", "monthly"),  # missed 1st
        ("2026-12-01 01:00", "2026-11-30 02:00", "2026-11-01 02:00", None),  # the 1st, early
        ("2027-01-01 01:00", "2026-12-31 02:00", "2026-11-01 02:00", "monthly"),  # no Dec full
        ("2026-12-05 02:10", "2026-12-05 00:30", "2026-12-01 02:00", "daily"),  # manual at 00:30
    ],
)
def test_what_the_schedule_takes(
    now: str, latest: str | None, latest_full: str | None, wanted: str | None
) -> None:
    def parse(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    assert (
        due(
            now=datetime.fromisoformat(now),
            hour=2,
            latest=parse(latest),
            latest_full=parse(latest_full),
        )
        == wanted
    )


@pytest.mark.slow
def test_retention_keeps_the_configured_counts(platform: Platform) -> None:
    keep = service.Retention(full=2, diff=1)

    def kept() -> list[str]:
        return [b.type for b in service.inventory(platform.repo).backups]

    labels = [platform.backup(full=True, retention=keep)]
    for _ in range(2):
        labels.append(platform.backup(retention=keep))
    assert kept() == ["full", "diff"]  # the older differential expired
    for _ in range(2):
        labels.append(platform.backup(full=True, retention=keep))
    backups = service.inventory(platform.repo).backups
    assert [b.label for b in backups] == labels[-2:]  # the first full went, its diffs with it
    archives = {p.name for p in platform.repo.files.iterdir()}
    assert archives == {f"{label}.tar.gz" for label in labels[-2:]}


def test_problems_name_a_missing_or_old_backup_and_a_failing_archive(migrated: Platform) -> None:
    platform = migrated
    engine = create_engine(platform.url)
    try:
        with Session(engine) as db:
            assert service.problems(db=db, settings=platform.settings) == [
                "There is no backup yet."
            ]
            platform.backup(full=True)
            assert service.problems(db=db, settings=platform.settings) == []
            later = utcnow() + timedelta(hours=27)
            (old,) = service.problems(db=db, settings=platform.settings, now=later)
            assert "27 hours old" in old

            platform.execute("ALTER SYSTEM SET archive_command = 'false'")
            platform.execute("SELECT pg_reload_conf()")
            platform.execute("CREATE TABLE t AS SELECT 1")
            platform.execute("SELECT pg_switch_wal()")
            deadline = utcnow() + timedelta(seconds=30)
            while utcnow() < deadline and not service.archiver_problem(db):
                db.rollback()  # a new snapshot of the statistics
            (failing,) = service.problems(db=db, settings=platform.settings)
            assert failing.startswith("WAL archiving is failing")
    finally:
        engine.dispose()


@pytest.mark.slow
def test_the_worker_takes_the_first_backup_at_once_and_reports_it(migrated: Platform) -> None:
    settings = migrated.settings.model_copy(update={"database_url": migrated.url})
    engine = create_engine(migrated.url)
    try:
        jobs.configure(jobs.Runtime(settings, sessionmaker(engine), make_mailer(settings)))
        tasks.scheduled_backup(timestamp=0)
        tasks.scheduled_backup(timestamp=0)  # nothing more is due within the hour
        with Session(engine) as db:
            runs = db.scalars(select(BackupRun)).all()
        assert [(r.kind, r.type, r.outcome) for r in runs] == [("monthly", "full", "ok")]
        metrics.refresh(engine)
        stamp = REGISTRY.get_sample_value(
            "vmcloud_backup_last_success_timestamp_seconds", {"kind": "monthly"}
        )
        assert stamp is not None and abs(stamp - time.time()) < 600
    finally:
        engine.dispose()
