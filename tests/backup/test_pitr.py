"""Point-in-time restore: every row committed before the chosen instant, none after."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from tests.backup.conftest import Platform
from vmcloud.backup import restore, service
from vmcloud.config import Settings
from vmcloud.core.clock import utcnow
from vmcloud.db.embedded import EmbeddedPostgres
from vmcloud.db.pgbackrest import PgBackRest

pytestmark = pytest.mark.slow  # real clusters, backups and restores


def test_a_restore_to_an_instant_has_what_was_committed_before_it_and_nothing_after(
    platform: Platform, tmp_root: Path
) -> None:
    secrets = platform.settings.data_dir / "secrets"
    secrets.mkdir()
    (secrets / "jwt_secret").write_text("kept")
    platform.execute("CREATE TABLE rows (id int PRIMARY KEY, phase text)")
    full = platform.backup(full=True)
    platform.execute("INSERT INTO rows SELECT g, 'after full' FROM generate_series(1, 50) g")
    diff = platform.backup()
    assert diff.startswith(full + "_") and diff.endswith("D")
    committed: list[tuple[int, object]] = []
    for n in range(51, 61):  # one commit each, with the time it was known committed
        platform.execute("INSERT INTO rows VALUES (%s, 'after diff')", n)
        committed.append((n, utcnow()))
        time.sleep(0.15)
    target = committed[5][1] + timedelta(milliseconds=50)  # after row 56, before row 57
    platform.repo.run("check")  # the segment holding the last commits is archived

    assert service.inventory(platform.repo).pitr_from is not None
    into = tmp_root / "restored"
    done = restore.restore_into(
        repo=platform.repo, settings=platform.settings, into=into, to_time=target
    )

    assert "secrets" in done
    assert (into / "secrets" / "jwt_secret").read_text() == "kept"
    copy = EmbeddedPostgres(into / "postgres")
    with copy, psycopg.connect(copy.conninfo("vmcloud")) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM rows ORDER BY id")]
        archive_mode = conn.execute("SHOW archive_mode").fetchone()
    assert ids == list(range(1, 57))
    assert archive_mode == ("off",)  # the copy never pushes WAL into the live repository

    # Without the archive of the backup's files the restore says so, not silently.
    for archive in platform.repo.files.iterdir():
        archive.unlink()
    again = restore.restore_into(
        repo=platform.repo, settings=platform.settings, into=tmp_root / "again", to_time=target
    )
    assert any(line.startswith("NOT secrets/") and diff in line for line in again), again
    assert not (tmp_root / "again" / "secrets").exists()


def test_a_restore_refuses_the_live_directory_and_an_existing_one(tmp_root: Path) -> None:
    settings = Settings(data_dir=tmp_root / "data", jwt_secret="x" * 64)
    repo = PgBackRest(tmp_root / "data" / "backup", pg_root=tmp_root / "data" / "postgres")
    (tmp_root / "other" / "postgres").mkdir(parents=True)
    for into, message in ((settings.data_dir, "--replace"), (tmp_root / "other", "exists")):
        with pytest.raises(service.BackupError, match=message):
            restore.restore_into(repo=repo, settings=settings, into=into, to_time=None)
