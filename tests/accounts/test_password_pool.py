"""Password hashing runs in a bounded pool of its own: never more computations at once than
its size, never on the caller's thread, never waited for on the event loop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from vmcloud.accounts import passwords
from vmcloud.app import create_app
from vmcloud.config import Settings
from vmcloud.db.session import make_engine


def _wait_until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def test_no_more_computations_run_at_once_than_the_pool_has_threads() -> None:
    pool = passwords.HashPool(2)
    release = threading.Event()
    threads_seen: set[str] = set()

    def held(n: int) -> int:
        threads_seen.add(threading.current_thread().name)
        release.wait(30)
        return n

    try:
        with ThreadPoolExecutor(max_workers=5) as callers:
            results = [callers.submit(pool.run, held, n) for n in range(5)]
            _wait_until(lambda: pool.stats().running == 2, "two computations running")
            _wait_until(lambda: pool.stats().waiting == 3, "three waiting their turn")
            assert pool.stats().running == 2  # the other three still wait
            release.set()
            assert sorted(r.result(timeout=30) for r in results) == [0, 1, 2, 3, 4]
        stats = pool.stats()
        assert (stats.calls, stats.peak, stats.running, stats.waiting) == (5, 2, 0, 0)
        assert all(name.startswith("argon2") for name in threads_seen)
    finally:
        pool.shutdown()


def test_real_hashes_from_many_threads_keep_to_the_bound(production_hasher: PasswordHasher) -> None:
    pool = passwords.HashPool(2)
    hashed = production_hasher.hash("twelve chars!")
    try:
        with ThreadPoolExecutor(max_workers=8) as callers:
            results = list(
                callers.map(
                    lambda n: pool.run(passwords._verify, hashed, "twelve chars!"), range(8)
                )
            )
        assert results == [True] * 8
        assert pool.stats().calls == 8
        assert 1 <= pool.stats().peak <= 2
    finally:
        pool.shutdown()


def test_hashing_is_refused_on_the_event_loop() -> None:
    async def on_the_loop() -> None:
        passwords.hash_password("twelve chars!")

    with pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(on_the_loop())


def test_the_pool_is_sized_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_pool", None)
    assert passwords.configure(3).size == 3
    assert passwords.configure(3) is passwords.pool()
    assert passwords.configure(None).size == passwords.default_workers() >= 1
    passwords.pool().shutdown()


def test_concurrent_logins_never_hash_more_at_once_than_the_bound(
    settings: Settings, fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = settings.model_copy(
        update={
            "database_url": fresh_database_url,
            "data_dir": tmp_path,
            "rate_limit_namespace": f"p{uuid.uuid4().hex[:8]}:",
            "password_hash_workers": 2,
            "db_pool_size": 12,
        }
    )
    pool = passwords.HashPool(2)
    monkeypatch.setattr(passwords, "_pool", pool)  # configure(2) keeps it
    engine = make_engine(own)
    try:
        with Session(engine) as db:
            names = [make_user(db).username for _ in range(8)]
            db.commit()
        app = create_app(own, engine=engine)
        calls = pool.stats().calls
        with TestClient(app, client=("198.51.100.44", 50000)) as client:

            def log_in(name: str) -> int:
                body = {"login": name, "password": PASSWORD}
                return client.post("/api/v1/auth/login", json=body).status_code

            with ThreadPoolExecutor(max_workers=8) as callers:
                statuses = list(callers.map(log_in, names))
        assert statuses == [200] * 8
        assert passwords.pool() is pool
        assert pool.stats().calls == calls + 8
        assert 1 <= pool.stats().peak <= 2
    finally:
        pool.shutdown()
        engine.dispose()


def test_hash_threads_yield_to_request_threads() -> None:
    pool = passwords.HashPool(1)
    try:
        mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        theirs = pool.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        assert theirs == min(19, mine + passwords.HASH_NICE)
    finally:
        pool.shutdown()
