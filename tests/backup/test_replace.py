"""``vmcloud backup restore --replace``: a live installation back to an instant, the old files
kept aside, and the platform running on the restored data with its ledger verifying."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.backup.conftest import Platform
from tests.factories.accounts import fund, make_user
from vmcloud.accounts.models import User
from vmcloud.app import create_app
from vmcloud.backup import service
from vmcloud.billing import verification
from vmcloud.cli import app as cli
from vmcloud.core.clock import utcnow
from vmcloud.db.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow  # real clusters, backups and restores


def test_restore_replace_round_trips_a_live_installation(
    migrated: Platform, clean_env: pytest.MonkeyPatch
) -> None:
    data_dir = migrated.settings.data_dir
    (data_dir / "secrets").mkdir()
    (data_dir / "secrets" / "encryption_key").write_text("before")
    engine = create_engine(migrated.url)
    with Session(engine) as db, db.begin():
        kept = make_user(db, balance="10.00")
        kept_id, kept_name = kept.id, kept.username
    migrated.backup(full=True)
    time.sleep(1.2)  # pgBackRest stamps a backup's end in whole seconds, after its last WAL
    target = utcnow()
    time.sleep(0.3)
    with Session(engine) as db, db.begin():
        make_user(db, username="after_target", balance="5.00")
        fund(db, db.get_one(User, kept_id), "3.00")
    engine.dispose()
    (data_dir / "secrets" / "encryption_key").write_text("after")
    migrated.repo.run("check")

    clean_env.setenv("VMCLOUD_DATA_DIR", str(data_dir))
    argv = ["backup", "restore", "--into", str(data_dir), "--to-time", target.isoformat()]
    refused = CliRunner().invoke(cli, argv)  # --replace is required for the live directory
    assert refused.exit_code == 1 and "--replace" in refused.output
    running = CliRunner().invoke(cli, [*argv, "--replace"])  # our server is still up
    assert running.exit_code == 1 and "vmcloud up" in running.output

    migrated.server.stop()
    early = [*argv[:-1], "2020-01-01T00:00:00Z", "--replace"]  # before any backup
    failed = CliRunner().invoke(cli, early)
    assert failed.exit_code == 1 and "unable to find backup set" in failed.output
    assert not list(data_dir.glob("before-restore-*"))  # everything put back
    assert (data_dir / "secrets" / "encryption_key").read_text() == "after"
    done = CliRunner().invoke(cli, [*argv, "--replace"])
    assert done.exit_code == 0, done.output
    (aside,) = data_dir.glob("before-restore-*")
    assert (aside / "postgres-data" / "PG_VERSION").exists()
    assert (aside / "secrets" / "encryption_key").read_text() == "after"
    assert (data_dir / "secrets" / "encryption_key").read_text() == "before"

    # What `vmcloud up` does: start archiving, then serve.
    with EmbeddedPostgres(data_dir / "postgres", archive=True) as server:
        settings = migrated.settings.model_copy(update={"database_url": server.url("vmcloud")})
        with TestClient(create_app(settings)) as client:
            assert client.get("/readyz").status_code == 200
        engine = create_engine(server.url("vmcloud"))
        try:
            with Session(engine) as db, db.begin():
                assert db.scalars(select(User.username)).all() == [kept_name]
                assert db.get_one(User, kept_id).balance == Decimal("10.00")
                assert verification.check(db=db, full=True).mismatches == []
        finally:
            engine.dispose()
        after = service.take(
            repo=migrated.repo,
            data_dir=data_dir,
            kind="manual",
            full=False,
            retention=service.Retention(),
        )
        assert after.error is None  # archiving and backups go on, on the new timeline


def test_a_replace_without_the_backups_files_archive_keeps_the_live_files(
    migrated: Platform, clean_env: pytest.MonkeyPatch
) -> None:
    """Without the live secrets the restored database's stored secrets could not be read: when
    no archive of the backup's files is found, the live ones (moved aside) are copied back."""
    data_dir = migrated.settings.data_dir
    (data_dir / "secrets").mkdir()
    (data_dir / "secrets" / "encryption_key").write_text("live")
    migrated.backup(full=True)
    for archive in migrated.repo.files.iterdir():
        archive.unlink()
    migrated.repo.run("check")
    migrated.server.stop()

    clean_env.setenv("VMCLOUD_DATA_DIR", str(data_dir))
    done = CliRunner().invoke(cli, ["backup", "restore", "--into", str(data_dir), "--replace"])
    assert done.exit_code == 0, done.output
    (aside,) = data_dir.glob("before-restore-*")
    assert (aside / "secrets" / "encryption_key").read_text() == "live"
    assert (data_dir / "secrets" / "encryption_key").read_text() == "live"
