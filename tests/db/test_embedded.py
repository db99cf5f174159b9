"""The embedded PostgreSQL: created once, shared while running, stopped by its owner only."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from vmcloud.db.embedded import EmbeddedPostgres, EmbeddedPostgresError

pytestmark = pytest.mark.slow


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vmc-emb-", dir="/tmp"))
    path.chmod(0o711)
    yield path / "pg"
    shutil.rmtree(path, ignore_errors=True)


def test_start_creates_a_private_pg15_and_stop_stops_it(root: Path) -> None:
    server = EmbeddedPostgres(root, durable=False).start()
    try:
        assert server.owned
        assert server.is_running()
        with psycopg.connect(server.conninfo()) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()
            listen = conn.execute("SHOW listen_addresses").fetchone()
        assert version is not None
        assert version[0].startswith("15")
        assert listen is not None
        assert listen[0] == ""
        assert (root / "data" / "PG_VERSION").read_text().strip() == "15"
    finally:
        server.stop()
    assert not server.is_running()


def test_second_user_shares_the_server_and_does_not_stop_it(root: Path) -> None:
    owner = EmbeddedPostgres(root, durable=False).start()
    try:
        guest = EmbeddedPostgres(root, durable=False).start()
        assert owner.owned
        assert not guest.owned
        guest.stop()
        assert owner.is_running()
    finally:
        owner.stop()
    assert not owner.is_running()


def test_restart_keeps_data(root: Path) -> None:
    with EmbeddedPostgres(root, durable=False) as server:
        server.create_database("keep")
        with psycopg.connect(server.conninfo("keep")) as conn:
            conn.execute("CREATE TABLE t (v int)")
            conn.execute("INSERT INTO t VALUES (42)")
    with EmbeddedPostgres(root, durable=False) as server:
        with psycopg.connect(server.conninfo("keep")) as conn:
            row = conn.execute("SELECT v FROM t").fetchone()
        assert row == (42,)


def test_an_orphaned_server_is_adopted_and_stopped(root: Path) -> None:
    first = EmbeddedPostgres(root, durable=False).start()
    # The owning process dies without stopping the server: its lock goes with it.
    assert first._lock is not None
    first._lock.close()
    first._lock = None
    second = EmbeddedPostgres(root, durable=False).start()
    try:
        assert second.owned
        assert second.is_running()
    finally:
        second.stop()
    assert not second.is_running()


def test_too_long_a_path_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedPostgresError, match="too long"):
        EmbeddedPostgres(tmp_path / ("x" * 90))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to 'postgres'")
def test_unreachable_directory_is_refused_clearly() -> None:
    hidden = Path(tempfile.mkdtemp(prefix="vmc-hidden-", dir="/tmp"))  # 0700, root's own
    try:
        with pytest.raises(EmbeddedPostgresError, match="cannot reach"):
            EmbeddedPostgres(hidden / "pg").start()
    finally:
        shutil.rmtree(hidden, ignore_errors=True)
