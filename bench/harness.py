"""A whole platform in one process for benchmarks: a private PostgreSQL, migrations, the API
with its in-process worker, and a verified customer whose balance came in as a staff credit
(the ledger and the balance agree, as on a real platform)."""

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
from vmcloud.audit.service import AuditContext
from vmcloud.billing import adjustments, ledger
from vmcloud.config import Settings
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres
from vmcloud.db.session import make_engine, make_session_factory, unit_of_work

PASSWORD = "benchmark password"
# What the customer is given before the run: enough for any benchmark's orders (every create
# checks the balance since billing landed; without it each one is refused with 402).
BALANCE = "1000000.00"


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
        sessions = make_session_factory(engine)
        password_hash = hash_password(PASSWORD)
        with unit_of_work(sessions) as db:
            customer = User(
                email="bench@example.com",
                username="bench",
                password_hash=password_hash,
                role="customer",
                status="active",
                email_verified=True,
            )
            operator = User(
                email="operator@example.com",
                username="operator",
                password_hash=password_hash,
                role="admin",
                status="active",
                email_verified=True,
            )
            db.add_all([customer, operator])
            if prepare is not None:
                prepare(db, root)
        # The money arrives as the platform gives it: a staff credit, one ledger entry.
        with unit_of_work(sessions, context=AuditContext(actor_id=operator.id)) as db:
            adjustments.credit(
                db=db,
                user_id=customer.id,
                amount=BALANCE,
                reason="benchmark funding",
                admin=operator,
            )
        with unit_of_work(sessions) as db:
            if mismatches := ledger.verify(db=db, user_id=customer.id):
                raise RuntimeError(f"balance and ledger disagree: {mismatches}")
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
