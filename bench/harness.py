"""A whole platform in one process for benchmarks: a private PostgreSQL, migrations, the API
with its in-process worker, and a verified customer."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.accounts.passwords import hash_password
from vmcloud.app import create_app
from vmcloud.config import Settings
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres
from vmcloud.db.session import make_engine

PASSWORD = "benchmark password"


@dataclass
class Platform:
    client: TestClient
    headers: dict[str, str]
    settings: Settings
    root: Path

    def session(self) -> Session:
        return Session(make_engine(self.settings))

    def wait_for(self, instance_id: str, status: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.client.get(f"/api/v1/instances/{instance_id}", headers=self.headers).json()
            if body.get("status") == status:
                return body
            time.sleep(0.05)
        raise TimeoutError(f"{instance_id} never became {status}: {body}")


@contextmanager
def platform(prepare: Any = None, concurrency: int = 4) -> Iterator[Platform]:
    root = Path(tempfile.mkdtemp(prefix="vmc-bench-", dir="/tmp"))
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg", durable=False).start()
    try:
        server.create_database("vmcloud")
        url = server.url("vmcloud")
        migrate.upgrade(url)
        settings = Settings(
            data_dir=root,
            database_url=url,
            run_worker=True,
            worker_concurrency=concurrency,
            allow_fake_driver=True,
            rate_limit_namespace=f"b{uuid.uuid4().hex[:6]}:",
            db_pool_size=20,
        )
        engine = make_engine(settings)
        with Session(engine) as db:
            db.add(
                User(
                    email="bench@example.com",
                    username="bench",
                    password_hash=hash_password(PASSWORD),
                    role="customer",
                    status="active",
                    email_verified=True,
                )
            )
            if prepare is not None:
                prepare(db, root)
            db.commit()
        engine.dispose()
        with TestClient(create_app(settings), client=("198.51.100.200", 1)) as client:
            tokens = client.post(
                "/api/v1/auth/login", json={"login": "bench", "password": PASSWORD}
            ).json()
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            yield Platform(client, headers, settings, root)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
