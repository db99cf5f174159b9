"""The read replica: a streaming standby of the embedded cluster, and the reads routed to it.

One standby of the suite's cluster serves the module (building it is the slow part)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.factories.accounts import PASSWORD, fund, make_user
from tests.helpers import bearer, login
from vmcloud.accounts.models import User
from vmcloud.app import create_app
from vmcloud.cli import app
from vmcloud.config import Settings
from vmcloud.db.embedded import EmbeddedPostgres
from vmcloud.db.replica import Replica, status
from vmcloud.db.session import make_engine, make_read_engine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replica(pg: EmbeddedPostgres, template_url: str) -> Iterator[Replica]:
    standby = Replica(pg)
    started = time.monotonic()
    standby.start()
    print(f"replica built and started in {time.monotonic() - started:.2f} s")
    try:
        yield standby
    finally:
        standby.destroy()


def _eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _dbname(url: str) -> str:
    name = make_url(url).database
    assert name
    return name


def test_the_replica_streams_and_refuses_writes(
    replica: Replica, pg: EmbeddedPostgres, fresh_database_url: str
) -> None:
    dbname = _dbname(fresh_database_url)
    with psycopg.connect(pg.conninfo(dbname), autocommit=True) as primary:
        primary.execute("CREATE TABLE streamed (n int)")
        written = time.monotonic()
        primary.execute("INSERT INTO streamed VALUES (42)")

    def arrived() -> bool:
        try:
            with psycopg.connect(replica.conninfo(dbname)) as standby:
                row = standby.execute("SELECT n FROM streamed").fetchone()
        except (psycopg.OperationalError, psycopg.errors.UndefinedTable):  # not there yet
            return False
        return row == (42,)

    _eventually(arrived)
    print(f"row visible on the standby after {time.monotonic() - written:.3f} s")
    with psycopg.connect(replica.conninfo(dbname)) as standby:
        assert standby.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            standby.execute("INSERT INTO streamed VALUES (1)")

    state = status(replica)
    assert state.running
    assert state.streaming
    assert state.in_recovery is True
    assert state.replayed_lsn
    assert state.lag_bytes is not None


def test_list_routes_read_from_the_replica_and_fall_back_to_the_primary(
    replica: Replica, fresh_database_url: str, app_settings: Settings
) -> None:
    settings = app_settings.model_copy(
        update={
            "database_url": fresh_database_url,
            "database_read_url": replica.read_url(_dbname(fresh_database_url)),
        }
    )
    engine = make_engine(settings)
    with Session(engine) as db:
        user = make_user(db, username="replica-reader", balance="10")
        db.commit()
        user_id = user.id
    dbname = _dbname(fresh_database_url)
    try:
        with TestClient(create_app(settings), client=("198.51.100.9", 50000)) as client:
            headers = bearer(login(client, "replica-reader", PASSWORD))

            def ledger() -> list[object]:
                response = client.get("/api/v1/billing/transactions", headers=headers)
                assert response.status_code == 200, response.text
                items: list[object] = response.json()["items"]
                return items

            _eventually(lambda: len(ledger()) == 1)
            # Hold the standby still: what the primary commits now is not on it.
            with psycopg.connect(replica.conninfo(dbname), autocommit=True) as standby:
                standby.execute("SELECT pg_wal_replay_pause()")
                # Only a request: replay stops at its next check (PostgreSQL's docs say so).
                state = "SELECT pg_get_wal_replay_pause_state()"
                _eventually(lambda: standby.execute(state).fetchone() == ("paused",))
            with Session(engine) as db:
                fund(db, db.get_one(User, user_id), Decimal("5"))
                db.commit()
            balance = client.get("/api/v1/billing/balance", headers=headers).json()
            assert Decimal(balance["balance"]) == Decimal("15")  # the primary's answer
            assert len(ledger()) == 1  # the standby's answer

            replica.stop()
            try:
                assert len(ledger()) == 2  # the primary, through the same read engine
            finally:
                replica.start()
                with psycopg.connect(replica.conninfo(dbname), autocommit=True) as standby:
                    standby.execute("SELECT pg_wal_replay_resume()")
    finally:
        engine.dispose()


runner = CliRunner()


def test_replica_commands_start_report_and_stop_a_standby(
    clean_env: pytest.MonkeyPatch,
) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="vmc-rep-", dir="/tmp"))
    data_dir.chmod(0o711)
    clean_env.setenv("VMCLOUD_DATA_DIR", str(data_dir))
    primary = EmbeddedPostgres(data_dir / "postgres", durable=False)
    try:
        refused = runner.invoke(app, ["db", "replica", "start"])
        assert refused.exit_code == 1
        assert "not running" in refused.output
        primary.start()

        started = runner.invoke(app, ["db", "replica", "start"])
        assert started.exit_code == 0, started.output
        assert "VMCLOUD_DATABASE_READ_URL=" in started.output
        _eventually(
            lambda: "streaming:  yes" in runner.invoke(app, ["db", "replica", "status"]).output
        )
        report = runner.invoke(app, ["db", "replica", "status"])
        assert report.exit_code == 0
        assert "running:    yes" in report.output
        assert "lag:        " in report.output

        stopped = runner.invoke(app, ["db", "replica", "stop"])
        assert stopped.exit_code == 0, stopped.output
        report = runner.invoke(app, ["db", "replica", "status"])
        assert report.exit_code == 1
        assert "running:    no" in report.output
    finally:
        standby = Replica(primary)
        standby.take_over()  # stops it if a failed step left it running
        standby.destroy()
        primary.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_replica_commands_refuse_an_external_database(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://vmcloud@db.example/vmcloud")
    for command in ("start", "stop", "status"):
        result = runner.invoke(app, ["db", "replica", command])
        assert result.exit_code == 1
        assert "DATABASE_URL is set" in result.output


def test_a_read_url_that_answers_nowhere_is_503_not_500(
    fresh_database_url: str, app_settings: Settings, tmp_path: Path
) -> None:
    settings = app_settings.model_copy(
        update={
            "database_url": fresh_database_url,
            "database_read_url": f"postgresql://vmcloud@/vmcloud?host={tmp_path}&port=1",
        }
    )
    engine = make_engine(settings)
    with Session(engine) as db:
        make_user(db, username="replica-nowhere")
        db.commit()
    engine.dispose()
    with TestClient(create_app(settings), client=("198.51.100.9", 50000)) as client:
        headers = bearer(login(client, "replica-nowhere", PASSWORD))
        response = client.get("/api/v1/billing/transactions", headers=headers)
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert client.get("/api/v1/billing/balance", headers=headers).status_code == 200


def test_the_read_engine_writes_nothing_even_on_the_primary(
    fresh_database_url: str, app_settings: Settings
) -> None:
    settings = app_settings.model_copy(
        update={"database_url": fresh_database_url, "database_read_url": fresh_database_url}
    )
    engine = make_read_engine(settings)
    assert engine is not None
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError) as refused:
            conn.execute(text("CREATE TABLE nope (n int)"))
        assert isinstance(refused.value.orig, psycopg.errors.ReadOnlySqlTransaction)
    finally:
        engine.dispose()
    assert make_read_engine(app_settings.model_copy(update={"database_read_url": None})) is None
