"""The backup problems the staff overview shows, read from the database alone: no backup, the
newest successful one older than 26 hours, a failed drill."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from vmcloud.backup import service
from vmcloud.backup.models import BackupDrill, BackupRun
from vmcloud.core.clock import utcnow


def _run(db: Session, *, hours_ago: float, outcome: str = "ok") -> None:
    finished = utcnow() - timedelta(hours=hours_ago)
    db.add(
        BackupRun(
            kind="daily",
            type="diff",
            label=f"label-{hours_ago}",
            started_at=finished - timedelta(minutes=1),
            finished_at=finished,
            outcome=outcome,
            error=None if outcome == "ok" else "repository 2: down",
        )
    )
    db.flush()


def test_no_backup_then_a_stale_one_then_a_fresh_one(db: Session) -> None:
    assert service.recorded_problems(db=db, managed=True) == ["There is no backup yet."]
    _run(db, hours_ago=30)
    _run(db, hours_ago=1, outcome="failed")  # a failed run is no backup
    stale, failed = service.recorded_problems(db=db, managed=True)
    assert stale == "The latest backup (label-30) is 30 hours old."
    assert "The latest backup run" in failed and failed.endswith("failed: repository 2: down")
    _run(db, hours_ago=2)
    [failed] = service.recorded_problems(db=db, managed=True)  # e.g. the second repository
    _run(db, hours_ago=0.5)
    assert service.recorded_problems(db=db, managed=True) == []


def test_a_failed_drill_is_a_problem(db: Session) -> None:
    _run(db, hours_ago=1)
    now = utcnow()
    db.add(
        BackupDrill(
            started_at=now, finished_at=now, outcome="failed", reason="verify: checksum invalid"
        )
    )
    db.flush()
    [problem] = service.recorded_problems(db=db, managed=True)
    assert problem.endswith("failed: verify: checksum invalid")


def test_an_external_database_is_not_backed_up_here(db: Session) -> None:
    [problem] = service.recorded_problems(db=db, managed=False)
    assert "not managed by this installation" in problem
