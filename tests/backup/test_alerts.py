"""A failed backup, verification or drill is emailed to every active staff member."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import make_user
from tests.helpers import JobRunner, Mailbox
from vmcloud.backup import service, tasks
from vmcloud.backup.models import BackupRun
from vmcloud.db.pgbackrest import PgBackRest, PgBackRestError


def test_a_failure_is_emailed_to_active_staff_only(
    db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    admin = make_user(db, role="admin")
    support = make_user(db, role="support")
    gone = make_user(db, role="support", status="suspended")
    customer = make_user(db)

    tasks._alert_staff(db, "The monthly restore drill failed", "verify: checksum invalid: 1")
    assert job_runner.run("backup.") == 2

    for user in (admin, support):
        (message,) = mailbox.to(user.email)
        assert message["Subject"] == "[VMCloud] The monthly restore drill failed"
        assert "checksum invalid: 1" in message.get_content()
    assert mailbox.to(gone.email) == [] and mailbox.to(customer.email) == []


def test_an_unreadable_repository_is_a_failed_run_and_one_alert_a_day(
    db: Session, job_runner: JobRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make_user(db, role="admin")
    repo = PgBackRest(tmp_path / "backup", pg_root=tmp_path / "postgres")
    monkeypatch.setattr(service, "embedded_repository", lambda settings: repo)

    def unreadable(repo: PgBackRest) -> None:
        raise PgBackRestError("pgbackrest info failed (41): unable to get info for path")

    monkeypatch.setattr(service, "inventory", unreadable)
    for _ in range(3):  # every ten minutes
        tasks.scheduled_backup(timestamp=0)

    (run,) = db.scalars(select(BackupRun)).all()
    assert run.outcome == "failed" and run.error is not None and "unable to get info" in run.error
    assert job_runner.run("backup.") == 1  # one alert for the day, not one per tick
