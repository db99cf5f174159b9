"""A second repository (a path here, e.g. a mounted disk) gets every backup, is verified, and
a second repository without a valid backup is a problem."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backup.conftest import Platform, start_platform
from vmcloud.backup import service
from vmcloud.db.pgbackrest import server_user


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


def test_an_unreachable_second_repository_does_not_stop_the_start(tmp_root: Path) -> None:
    blocked = tmp_root / "not-a-directory"
    blocked.write_text("")
    started = start_platform(tmp_root / "data", repo2={"path": str(blocked / "repo")})
    try:
        assert started.server.is_running()
        found = service.inventory(started.repo)
        assert any(p.startswith("Backup repository 2") for p in found.repo_problems)
    finally:
        started.server.stop()
