"""The request's session under more concurrent requests than the pool has connections.

Every request that touches the database holds one pooled connection from its first statement
until its session closes, across several threadpool hops (the caller's lookup, the endpoint,
the commit). A request thread that blocks waiting for a connection holds a threadpool token
while it waits; when the waiters take every token, the requests that hold the connections
cannot get a thread to finish, and everything stalls until the pool's checkout times out.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.app import create_app
from vmcloud.config import Settings
from vmcloud.db.session import make_engine

# More than anyio's default threadpool (40 threads), so waiting threads could take them all.
REQUESTS = 120


def test_more_concurrent_requests_than_connections_all_succeed(
    fresh_database_url: str, app_settings: Settings, tmp_path: Path
) -> None:
    # Two pooled connections, and a checkout that gives up quickly instead of after 30 s.
    settings = app_settings.model_copy(
        update={"database_url": fresh_database_url, "db_pool_size": 1, "db_pool_timeout": 5}
    )
    engine = make_engine(settings)
    with Session(engine) as db:
        make_user(db, username="crowd")
        db.commit()
    engine.dispose()
    with TestClient(create_app(settings), client=("198.51.100.9", 50000)) as client:
        headers = bearer(login(client, "crowd", PASSWORD))

        def me(_: int) -> int:
            return client.get("/api/v1/me", headers=headers).status_code

        with ThreadPoolExecutor(REQUESTS) as pool:
            statuses = list(pool.map(me, range(REQUESTS)))
    assert statuses == [200] * REQUESTS, sorted(set(statuses))
