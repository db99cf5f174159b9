"""Liveness and readiness as load balancers see them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from vmcloud.app import create_app
from vmcloud.config import Settings
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow


@pytest.fixture
def own_server() -> Iterator[EmbeddedPostgres]:
    """A cluster this test may stop, apart from the suite's."""
    root = Path(tempfile.mkdtemp(prefix="vmc-ready-", dir="/tmp"))
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg", durable=False).start()
    server.create_database("vmcloud")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _client_for(url: str, data_dir: Path) -> TestClient:
    settings = Settings(data_dir=data_dir, database_url=url, db_connect_timeout=2)
    return TestClient(create_app(settings), raise_server_exceptions=False)


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_when_migrated(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["migrations"] == sorted(migrate.head_revisions())


def test_readyz_follows_the_database_down_and_up(
    own_server: EmbeddedPostgres, data_dir: Path
) -> None:
    url = own_server.url("vmcloud")
    migrate.upgrade(url)
    with _client_for(url, data_dir) as client:
        assert client.get("/readyz").status_code == 200
        own_server.stop()
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert down.json()["type"] == "/problems/unavailable"
        assert "database" in down.json()["detail"].lower()
        assert client.get("/healthz").status_code == 200  # the process itself is fine
        own_server.start()
        assert client.get("/readyz").status_code == 200


def test_readyz_is_503_until_migrations_reach_head(
    own_server: EmbeddedPostgres, data_dir: Path
) -> None:
    url = own_server.url("vmcloud")
    migrate.upgrade(url, "0001_initial")
    with _client_for(url, data_dir) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "migration" in response.json()["detail"]
        migrate.upgrade(url)
        assert client.get("/readyz").status_code == 200


def test_readyz_reports_the_job_worker_from_its_heartbeats(
    fresh_database_url: str, data_dir: Path
) -> None:
    """With a worker expected (``vmcloud up``, ``serve --worker``: it runs in another
    process), readiness follows procrastinate's heartbeat table, not this process's memory."""
    settings = Settings(
        data_dir=data_dir,
        database_url=fresh_database_url,
        expect_worker=True,
        job_stalled_after_seconds=30,
    )
    engine = create_engine(settings.database_url or "")
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            none = client.get("/readyz")
            assert none.status_code == 503
            assert "No job worker is registered" in none.json()["detail"]
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO procrastinate_workers DEFAULT VALUES"))
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["worker"] == "running"
            with engine.begin() as conn:  # a worker killed 31 s ago, still registered
                conn.execute(
                    text(
                        "UPDATE procrastinate_workers"
                        " SET last_heartbeat = now() - interval '31 seconds'"
                    )
                )
            silent = client.get("/readyz")
            assert silent.status_code == 503
            assert "No job worker has beaten in the last 30 s" in silent.json()["detail"]
        # Without a worker expected, the worker is not part of readiness.
        quiet = settings.model_copy(update={"expect_worker": False})
        with TestClient(create_app(quiet), raise_server_exceptions=False) as client:
            answer = client.get("/readyz")
            assert answer.status_code == 200 and "worker" not in answer.json()
    finally:
        engine.dispose()


def test_requests_get_503_while_the_database_is_away_and_recover(
    own_server: EmbeddedPostgres, data_dir: Path
) -> None:
    url = own_server.url("vmcloud")
    migrate.upgrade(url)
    login = {"login": "nobody", "password": "not a real password"}
    with _client_for(url, data_dir) as client:
        assert client.get("/api/v1/products").status_code == 200
        own_server.stop()
        for method, path, body in (
            ("GET", "/api/v1/products", None),
            ("POST", "/api/v1/auth/login", login),
            ("GET", "/api/v1/instances", None),  # no token: fails before the database
        ):
            response = client.request(method, path, json=body)
            if path == "/api/v1/instances":
                assert response.status_code == 401
                continue
            assert response.status_code == 503, (path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"] == "/problems/unavailable"
            assert int(response.headers["retry-after"]) > 0
        own_server.start()
        assert client.get("/api/v1/products").status_code == 200
        assert client.post("/api/v1/auth/login", json=login).status_code == 401
