"""A ``restore --replace`` that fails after the live files were moved aside puts them back
(the failed copy kept in ``failed-restore-<time>``), and a target later than the newest
archived WAL is refused before anything moves."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from vmcloud.backup import restore
from vmcloud.backup.service import BackupError
from vmcloud.config import Settings
from vmcloud.core.clock import utcnow


class FakeServer:
    """Stands in for the stopped live cluster: only its paths matter here."""

    def __init__(self, root: Path) -> None:
        self.root, self.data_dir, self.port = root, root / "data", 5432

    def take_over(self, before_stop: object = None) -> None:
        pass

    def stop(self) -> None:
        pass


def _live(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    (data / "postgres" / "data").mkdir(parents=True)
    (data / "postgres" / "data" / "LIVE").write_text("live")
    (data / "secrets").mkdir()
    (data / "secrets" / "key").write_text("live key")
    return Settings(data_dir=data, jwt_secret="x" * 64)


def test_a_recovery_that_fails_puts_the_live_data_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _live(tmp_path)
    data = settings.data_dir
    monkeypatch.setattr(restore, "EmbeddedPostgres", FakeServer)
    monkeypatch.setattr(restore, "label_for", lambda repo, t: "L1")
    monkeypatch.setattr(restore, "newest_archived_at", lambda repo: None, raising=False)

    def restore_cluster(*, pg_root: Path, **_: object) -> None:
        (pg_root / "data").mkdir()
        (pg_root / "data" / "RESTORED").write_text("x")

    def files_restore(*, into: Path, **_: object) -> list[str]:
        (into / "secrets").mkdir()
        (into / "secrets" / "key").write_text("restored key")
        return ["secrets"]

    def recover(server: object) -> None:
        raise BackupError("FATAL: recovery ended before configured recovery target was reached")

    monkeypatch.setattr(restore, "restore_cluster", restore_cluster)
    monkeypatch.setattr(restore.files, "restore", files_restore)
    monkeypatch.setattr(restore, "_recover", recover)

    with pytest.raises(BackupError) as failed:
        restore.replace_live(repo=None, settings=settings, to_time=None)  # type: ignore[arg-type]

    assert (data / "postgres" / "data" / "LIVE").exists()
    assert not (data / "postgres" / "data" / "RESTORED").exists()
    assert (data / "secrets" / "key").read_text() == "live key"
    assert not list(data.glob("before-restore-*"))
    (kept,) = data.glob("failed-restore-*")
    assert (kept / "postgres-data" / "RESTORED").exists()
    assert (kept / "secrets" / "key").read_text() == "restored key"
    assert "recovery ended before" in str(failed.value) and str(kept) in str(failed.value)


def test_a_target_after_the_newest_archived_wal_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _live(tmp_path)
    monkeypatch.setattr(restore, "EmbeddedPostgres", FakeServer)
    monkeypatch.setattr(restore, "label_for", lambda repo, t: "L1")
    archived = utcnow() - timedelta(minutes=5)
    monkeypatch.setattr(restore, "newest_archived_at", lambda repo: archived)

    with pytest.raises(BackupError, match="newest archived WAL"):
        restore.replace_live(repo=None, settings=settings, to_time=utcnow())  # type: ignore[arg-type]
    assert (settings.data_dir / "postgres" / "data" / "LIVE").exists()
    assert not list(settings.data_dir.glob("before-restore-*"))
