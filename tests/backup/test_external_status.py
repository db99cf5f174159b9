"""What the platform reads of an external database's backups: pg_stat_archiver, and the latest
backup when a pgBackRest configuration reaches the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.backup.conftest import Platform
from vmcloud.backup import service
from vmcloud.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_status_reads_the_archiver_and_the_repository(platform: Platform, tmp_path: Path) -> None:
    label = platform.backup(full=True)
    engine = create_engine(platform.url)
    try:
        with Session(engine) as db:
            read = service.external_status(db=db, config=platform.repo.config)
            unconfigured = service.external_status(db=db, config=None)
            unreachable = service.external_status(db=db, config=tmp_path / "missing.conf")
    finally:
        engine.dispose()
    assert read.archived_count >= 1
    assert read.last_archived_wal
    assert read.archiving_problem is None
    assert read.repository_error is None
    assert read.latest is not None and read.latest.label == label
    assert unconfigured.latest is None
    assert (
        unconfigured.repository_error
        and "VMCLOUD_PGBACKREST_CONFIG" in unconfigured.repository_error
    )
    assert unreachable.latest is None
    assert unreachable.repository_error and "cannot be read" in unreachable.repository_error


def test_the_status_command(platform: Platform, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", platform.url)
    nothing = runner.invoke(app, ["backup", "status"])
    assert nothing.exit_code == 1
    assert "VMCLOUD_PGBACKREST_CONFIG" in nothing.output

    label = platform.backup(full=True)
    clean_env.setenv("VMCLOUD_PGBACKREST_CONFIG", str(platform.repo.config))
    found = runner.invoke(app, ["backup", "status"])
    assert found.exit_code == 0, found.output
    assert f"latest backup:  {label} (full, manual)" in found.output


def test_the_status_command_says_when_the_database_cannot_be_reached(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("DATABASE_URL", f"postgresql://vmcloud@/vmcloud?host={tmp_path}&port=1")
    result = runner.invoke(app, ["backup", "status"])
    assert result.exit_code == 1
    assert "The database cannot be reached" in result.output
