"""The restore drill passes on a sound repository, records its RTO, and fails — saying why —
when a backup file or a WAL segment is corrupted (found by the text of ``verify``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from tests.backup.conftest import Platform
from vmcloud.backup import drill, metrics, service

pytestmark = pytest.mark.slow  # real clusters, backups and restores


def _record(platform: Platform, result: drill.DrillResult) -> None:
    engine = create_engine(platform.url)
    try:
        with Session(engine) as db, db.begin():
            drill.record(db=db, result=result)
        metrics.refresh(engine)
    finally:
        engine.dispose()


def _flip_bytes(path: Path) -> bytes:
    original = path.read_bytes()
    middle = len(original) // 2
    path.write_bytes(
        original[:middle]
        + bytes(b ^ 0xFF for b in original[middle : middle + 64])
        + original[middle + 64 :]
    )
    return original


def test_the_drill_passes_records_its_rto_and_fails_on_corruption(
    migrated: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrated.execute("CREATE TABLE payments_seen (id int PRIMARY KEY)")
    label = migrated.backup(full=True)
    migrated.execute("INSERT INTO payments_seen SELECT generate_series(1, 100)")

    result = drill.run(repo=migrated.repo, conninfo=migrated.conninfo)

    assert result.passed, result.reason
    assert result.backup_label == label
    assert result.rto_seconds is not None and result.rto_seconds > 0
    assert any("fingerprints" in step for step in result.steps)
    scratch_parent = migrated.settings.data_dir / "backup" / "drill"  # not /tmp
    assert scratch_parent.is_dir() and not list(scratch_parent.iterdir())

    monkeypatch.setattr(drill, "free_bytes", lambda path: 2**20)
    short = drill.run(repo=migrated.repo, conninfo=migrated.conninfo)
    assert short.reason is not None and "not enough free space" in short.reason
    monkeypatch.undo()
    _record(migrated, result)
    assert REGISTRY.get_sample_value("vmcloud_backup_drill_passed") == 1
    assert REGISTRY.get_sample_value("vmcloud_backup_drill_rto_seconds") == result.rto_seconds

    # A WAL segment rots in the repository.
    wal_dir = migrated.repo.repo / "archive" / "vmcloud"
    segment = sorted(wal_dir.glob("*/*/0000*-*.zst"))[-1]
    original = _flip_bytes(segment)
    failed = drill.run(repo=migrated.repo, conninfo=migrated.conninfo)
    assert not failed.passed
    assert failed.reason is not None and "verify" in failed.reason
    assert "archiveId" in failed.reason and "checksum invalid: 1" in failed.reason
    _record(migrated, failed)
    assert REGISTRY.get_sample_value("vmcloud_backup_drill_passed") == 0
    segment.write_bytes(original)

    # A file of the backup rots.
    files = sorted((migrated.repo.repo / "backup" / "vmcloud" / label / "pg_data").rglob("*.zst"))
    biggest = max(files, key=lambda p: p.stat().st_size)
    _flip_bytes(biggest)
    assert not service.verify(migrated.repo).ok
    failed = drill.run(repo=migrated.repo, conninfo=migrated.conninfo)
    assert not failed.passed
    assert failed.reason is not None and f"backup: {label}" in failed.reason
