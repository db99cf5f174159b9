"""WAL archiving of the embedded cluster: on where the platform runs, off in the test suite."""

from __future__ import annotations

import stat
from pathlib import Path

import psycopg

from vmcloud.db.embedded import EmbeddedPostgres


def _setting(server: EmbeddedPostgres, name: str) -> str:
    with psycopg.connect(server.conninfo()) as conn:
        row = conn.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return str(row[0])


def test_the_suites_clusters_do_not_archive(pg: EmbeddedPostgres) -> None:
    assert _setting(pg, "archive_mode") == "off"


def test_an_existing_cluster_starts_archiving_on_its_next_start(tmp_root: Path) -> None:
    with EmbeddedPostgres(tmp_root / "pg", durable=False) as plain:
        assert _setting(plain, "archive_mode") == "off"
    with EmbeddedPostgres(tmp_root / "pg", durable=False, archive=True) as server:
        assert _setting(server, "archive_mode") == "on"
        assert "archive-push" in _setting(server, "archive_command")
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t AS SELECT 1 AS x")
            conn.execute("SELECT pg_switch_wal()")
        server.backup.run("check")  # waits until the segment is in the repository
        with psycopg.connect(server.conninfo()) as conn:
            archived, failed = conn.execute(
                "SELECT archived_count, failed_count FROM pg_stat_archiver"
            ).fetchone() or (0, 0)
        assert archived >= 1 and failed == 0
    backup = tmp_root / "backup"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o750
    assert stat.S_IMODE((backup / "pgbackrest.conf").stat().st_mode) == 0o640
    assert "pg1-user=vmcloud" in (backup / "pgbackrest.conf").read_text()
