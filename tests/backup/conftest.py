from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from vmcloud.backup import service
from vmcloud.config import Settings
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres
from vmcloud.db.pgbackrest import PgBackRest


@pytest.fixture
def tmp_root() -> Iterator[Path]:
    """A short directory the postgres user can reach (socket paths are limited)."""
    root = Path(tempfile.mkdtemp(prefix="vmc-bk-", dir="/tmp"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Platform:
    """An installation's data directory with its archiving embedded cluster running."""

    settings: Settings
    server: EmbeddedPostgres
    repo: PgBackRest

    @property
    def url(self) -> str:
        return self.server.url("vmcloud")

    @property
    def conninfo(self) -> str:
        return self.server.conninfo("vmcloud")

    def execute(self, statement: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cursor = conn.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []

    def backup(self, *, full: bool = False, retention: service.Retention | None = None) -> str:
        outcome = service.take(
            repo=self.repo,
            data_dir=self.settings.data_dir,
            kind="manual",
            full=full,
            retention=retention or service.Retention(),
        )
        assert outcome.error is None and outcome.backup is not None, outcome.error
        return outcome.backup.label


def start_platform(
    data_dir: Path, *, migrated: bool = False, repo2: dict[str, str] | None = None
) -> Platform:
    data_dir.mkdir(exist_ok=True)
    data_dir.chmod(0o711)
    settings = Settings(
        data_dir=data_dir, jwt_secret="test-jwt-secret-" + "x" * 48, backup_repo2=repo2 or {}
    )
    server = EmbeddedPostgres(
        data_dir / "postgres", durable=False, archive=True, repo2=settings.backup_repo2
    ).start()
    server.create_database("vmcloud")
    if migrated:
        migrate.upgrade(server.url("vmcloud"))
    repo = service.embedded_repository(settings)
    assert repo is not None
    return Platform(settings, server, repo)


@pytest.fixture
def platform(tmp_root: Path) -> Iterator[Platform]:
    started = start_platform(tmp_root / "data")
    yield started
    started.server.stop()


@pytest.fixture
def migrated(tmp_root: Path) -> Iterator[Platform]:
    """A platform whose database is migrated to the head."""
    started = start_platform(tmp_root / "data", migrated=True)
    yield started
    started.server.stop()
