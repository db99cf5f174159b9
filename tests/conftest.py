"""Shared fixtures: one real PostgreSQL 15 per test process, each test inside a rolled-back
transaction.

The cluster is started in a temporary directory for the run (one per xdist worker). The schema
is migrated once into a template database; the suite's working database and any test that needs
a database of its own (CLI commands that commit, migration tests) are cloned from it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import JobRunner, Mailbox
from vmcloud.accounts import passwords
from vmcloud.app import create_app
from vmcloud.config import Settings
from vmcloud.core import jobs
from vmcloud.core.logging import configure_logging
from vmcloud.core.mail import make_mailer
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres
from vmcloud.db.session import make_engine, make_session_factory

TEMPLATE_DB = "vmcloud_template"
TEST_DB = "vmcloud_test"


# argon2id at the platform's parameters (m = 19 MiB, t = 2) costs about 40 ms a verification
# on the 2-core machine, and the in-process tests log in thousands of times (about a seventh of
# the quick tests' time). They hash with the same algorithm at its lowest cost; the tests of the
# parameters themselves ask for `production_hasher`. Processes that tests start (`vmcloud up`,
# `serve`, `worker`, the benchmarks) hash as the platform does.
PRODUCTION_HASHER = passwords._hasher
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("info", "json")
    passwords._hasher = TEST_HASHER
    passwords._DUMMY_HASH = TEST_HASHER.hash(uuid.uuid4().hex)


@pytest.fixture
def production_hasher(monkeypatch: pytest.MonkeyPatch) -> PasswordHasher:
    """The platform's own argon2 parameters for this test (see TEST_HASHER)."""
    monkeypatch.setattr(passwords, "_hasher", PRODUCTION_HASHER)
    return PRODUCTION_HASHER


# Modules (and packages, by a path ending in "/") whose tests share an expensive fixture (a
# server, a platform of processes, the browser suite's live server and Chromium): their tests go
# to one xdist worker together, so it is set up once. (xdist's own
# `xdist_group` cannot do it here: under pytest 9 pytest-xdist 3.8 fails to rename the tests,
# and its group scheduler keys tests by id, which would merge the fuzz run's many same-named
# items into one.)
ONE_WORKER_MODULES = frozenset(
    {"tests/test_serve_limits.py", "tests/faults/test_processes.py", "tests/web/browser/"}
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScheduling

    class OneWorkerModules(LoadScheduling):
        """xdist's ``load`` scheduling, which hands out tests in collection order, except
        that a test of ``ONE_WORKER_MODULES`` brings the rest of its module along."""

        def _send_tests(self, node: Any, num: int) -> None:
            chosen = self.pending[:num]
            modules = {self._module(i) for i in chosen} & ONE_WORKER_MODULES
            chosen += [i for i in self.pending[num:] if self._module(i) in modules]
            if chosen:
                taken = set(chosen)
                self.pending[:] = [i for i in self.pending if i not in taken]
                self.node2pending[node].extend(chosen)
                node.send_runtest_some(chosen)

        def _module(self, index: int) -> str:
            assert self.collection is not None
            module = str(self.collection[index]).partition("::")[0]
            for unit in ONE_WORKER_MODULES:
                if unit.endswith("/") and module.startswith(unit):
                    return unit
            return module

    return OneWorkerModules(config, log) if config.getvalue("dist") == "load" else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first (otherwise in collection order): the xdist workers take
    tests from the front of the list, so the long ones start early and the many short ones fill
    the gaps at the end, instead of one worker finishing a long test alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    # A short path under /tmp: the postgres user must reach it and the socket path is limited.
    root = Path(tempfile.mkdtemp(prefix="vmc-pg-", dir="/tmp"))
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg", durable=False).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(pg: EmbeddedPostgres) -> str:
    pg.create_database(TEMPLATE_DB)
    url = pg.url(TEMPLATE_DB)
    migrate.upgrade(url)
    return url


def _fresh_database(pg: EmbeddedPostgres) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg.create_database(name, template=TEMPLATE_DB)
    try:
        yield pg.url(name)
    finally:
        pg.drop_database(name)


@pytest.fixture
def fresh_database_url(pg: EmbeddedPostgres, template_url: str) -> Iterator[str]:
    """A migrated database of this test's own, for code that commits for real."""
    yield from _fresh_database(pg)


@pytest.fixture(scope="module")
def module_database_url(pg: EmbeddedPostgres, template_url: str) -> Iterator[str]:
    """A migrated database shared by one module's tests (for a server process they share)."""
    yield from _fresh_database(pg)


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vmc-data-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(pg: EmbeddedPostgres, template_url: str, data_dir: Path) -> Settings:
    pg.create_database(TEST_DB, template=TEMPLATE_DB)
    return Settings(
        data_dir=data_dir,
        database_url=pg.url(TEST_DB),
        jwt_secret="test-jwt-secret-" + "x" * 48,
        log_format="json",
    )


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    conn = engine.connect()
    outer = conn.begin()
    try:
        yield conn
    finally:
        outer.rollback()
        conn.close()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    # Commits inside the code under test release SAVEPOINTs; the outer transaction is rolled
    # back after the test, so every test starts from the migrated template's contents.
    return make_session_factory(connection, join_transaction_mode="create_savepoint")


@pytest.fixture
def db(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    session = session_factory()
    yield session
    session.close()


@pytest.fixture
def app_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The suite's settings with a mailbox and rate-limit counters of this test's own."""
    return settings.model_copy(
        update={"data_dir": tmp_path, "rate_limit_namespace": f"t{uuid.uuid4().hex[:10]}:"}
    )


@pytest.fixture
def app(app_settings: Settings, engine: Engine, session_factory: sessionmaker[Session]) -> FastAPI:
    return create_app(app_settings, engine=engine, session_factory=session_factory)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # A documentation address (RFC 5737) as the peer, so per-address rules apply as in life.
    with TestClient(
        app, raise_server_exceptions=False, client=("198.51.100.7", 50000)
    ) as test_client:
        yield test_client


@pytest.fixture
def mailbox(app_settings: Settings) -> Mailbox:
    return Mailbox(app_settings.data_dir / "mail")


@pytest.fixture
def job_runner(
    connection: Connection, session_factory: sessionmaker[Session], app_settings: Settings
) -> JobRunner:
    jobs.configure(jobs.Runtime(app_settings, session_factory, make_mailer(app_settings)))
    return JobRunner(connection)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No VMCLOUD_* or DATABASE_URL from the outer environment leaks into a test."""
    for key in list(os.environ):
        if key.startswith("VMCLOUD_") or key == "DATABASE_URL":
            monkeypatch.delenv(key)
    return monkeypatch
