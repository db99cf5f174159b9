"""A second repository (a path here, e.g. a mounted disk) gets every backup and the archive of
the files beside it, is verified, and a second repository without a valid backup is a
problem."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backup.conftest import Platform, start_platform
from vmcloud.backup import files, service
from vmcloud.db.pgbackrest import PgBackRest, server_user

WAL_SEGMENT = re.compile(r"^[0-9A-F]{24}-[0-9a-f]{40}")


@pytest.fixture
def two_repos(tmp_root: Path) -> Iterator[Platform]:
    offsite = tmp_root / "offsite"
    offsite.mkdir()
    owner = server_user()
    if owner is not None:
        os.chown(offsite, owner.pw_uid, owner.pw_gid)
    started = start_platform(tmp_root / "data", repo2={"path": str(offsite)})
    yield started
    started.server.stop()


def test_every_backup_goes_to_both_repositories(two_repos: Platform) -> None:
    before = service.inventory(two_repos.repo)
    assert any("repository 2" in p for p in before.repo_problems), before.repo_problems

    two_repos.backup(full=True)

    found = service.inventory(two_repos.repo)
    assert {b.repo for b in found.backups} == {1, 2}
    assert found.repo_problems == []
    checked = service.verify(two_repos.repo)
    assert checked.ok, checked.problems
    assert "repository 2" in checked.text


def test_the_files_archive_leaves_the_machine_with_the_second_repository(
    two_repos: Platform, tmp_root: Path
) -> None:
    """secrets/ and attachments/ go with each repository's backup; with the machine's own
    copies gone, a restore still brings them back from the second repository."""
    data_dir = two_repos.settings.data_dir
    (data_dir / "secrets").mkdir(exist_ok=True)
    (data_dir / "secrets" / "key").write_text("the key")
    two_repos.backup(full=True)
    by_repo = {b.repo: b.label for b in service.inventory(two_repos.repo).backups}
    offsite = files.path_for(two_repos.repo, by_repo[2], 2)
    assert offsite.parent == tmp_root / "offsite" / files.REPO_FOLDER
    assert offsite.exists() and files.path_for(two_repos.repo, by_repo[1], 1).exists()
    assert offsite.stat().st_mode & 0o077 == 0  # secrets: the platform's user only

    for local in two_repos.repo.files.iterdir():  # the machine's own archives are lost
        local.unlink()
    into = tmp_root / "elsewhere"
    into.mkdir()
    assert files.restore(repo=two_repos.repo, label=by_repo[2], into=into) == ["secrets"]
    assert (into / "secrets" / "key").read_text() == "the key"

    two_repos.backup(full=True, retention=service.Retention(full=1, diff=1))
    kept = {b.repo: b.label for b in service.inventory(two_repos.repo).backups}
    assert sorted(p.name for p in offsite.parent.iterdir()) == [f"{kept[2]}.tar.gz"]


def _segments_in(repo: Path) -> int:
    return sum(1 for p in repo.rglob("*") if WAL_SEGMENT.match(p.name))


def test_an_unreachable_second_repository_does_not_stop_the_start_nor_repository_1(
    tmp_root: Path,
) -> None:
    """Nor does it hold back the first repository's WAL: asynchronous archiving keeps pushing
    every segment there while PostgreSQL retries the one the second repository refuses
    (synchronously the first would get at most one segment ahead)."""
    blocked = tmp_root / "not-a-directory"
    blocked.write_text("")
    started = start_platform(tmp_root / "data", repo2={"path": str(blocked / "repo")})
    try:
        assert started.server.is_running()
        found = service.inventory(started.repo)
        assert any(p.startswith("Backup repository 2") for p in found.repo_problems)
        before = _segments_in(started.repo.repo)
        for n in range(4):
            started.execute(f"CREATE TABLE t{n} AS SELECT 1 AS x")
            started.execute("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 30
        while _segments_in(started.repo.repo) < before + 4:
            assert time.monotonic() < deadline, (before, _segments_in(started.repo.repo))
            time.sleep(0.2)
        failing = started.execute("SELECT failed_count FROM pg_stat_archiver")[0][0]
        assert isinstance(failing, int) and failing > 0  # and the failure is on record
    finally:
        started.server.stop()


def test_pruning_keeps_every_held_backups_archive_where_it_may_be(tmp_root: Path) -> None:
    """The local directory keeps the archive of a backup either repository still holds (a
    second repository's archives were kept there before it had a directory of its own); the
    second repository's directory keeps its own backups'."""
    repo = PgBackRest(
        tmp_root / "backup", pg_root=tmp_root / "pg", repo2={"path": str(tmp_root / "off")}
    )
    offsite = files.store_for(repo, 2)
    for store in (repo.files, offsite):
        store.mkdir(parents=True)
        for label in ("r1-old", "r1-new", "r2-old", "r2-new"):
            (store / f"{label}.tar.gz").write_text("")
    files.prune(repo=repo, keep={(1, "r1-new"), (2, "r2-new")})
    assert sorted(p.name for p in repo.files.iterdir()) == ["r1-new.tar.gz", "r2-new.tar.gz"]
    assert sorted(p.name for p in offsite.iterdir()) == ["r2-new.tar.gz"]


def test_nothing_is_pruned_while_a_repository_answers_with_an_error(tmp_root: Path) -> None:
    """A repository in error lists no backups, which must not read as all of them expired."""
    blocked = tmp_root / "not-a-directory"
    blocked.write_text("")
    started = start_platform(tmp_root / "data", repo2={"path": str(blocked / "repo")})
    try:
        stale = started.repo.files / "20200101-000000F.tar.gz"
        stale.parent.mkdir(exist_ok=True)
        stale.write_text("")
        outcome = service.take(
            repo=started.repo,
            data_dir=started.settings.data_dir,
            kind="manual",
            full=True,
            retention=service.Retention(),
        )
        assert outcome.error is not None and "repository 2" in outcome.error
        assert stale.exists()
    finally:
        started.server.stop()
