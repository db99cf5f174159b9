"""Twenty customers order at the same moment: the node never takes more than it has."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node, make_pool
from tests.helpers import bearer, login
from vmcloud.app import create_app
from vmcloud.compute.models import Instance, Node
from vmcloud.config import Settings
from vmcloud.db.session import make_engine


def test_twenty_concurrent_creates_never_overbook(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    own = settings.model_copy(
        update={
            "database_url": fresh_database_url,
            "data_dir": tmp_path,
            "rate_limit_namespace": f"c{uuid.uuid4().hex[:8]}:",
            "db_pool_size": 25,
        }
    )
    engine = make_engine(own)
    try:
        with Session(engine) as db:
            # Room for exactly four 1-vCPU plans; addresses for many more.
            node = make_node(db, vcpus=4, cpu_overcommit=1, memory_mb=65536, disk_gb=10_000)
            make_pool(db, "198.18.30.0/26")
            # Twenty different customers: nothing serialises them but the node itself.
            usernames = [make_user(db, balance="500.00").username for _ in range(20)]
            db.commit()
            node_id = node.id

        app = create_app(own, engine=engine)
        with TestClient(app, client=("198.51.100.99", 50000)) as client:
            tokens = [bearer(login(client, name, PASSWORD)) for name in usernames]

            def order(n: int) -> int:
                body = {
                    "name": f"rush-{n}",
                    "product": "nano",
                    "region": "local",
                    "image": "tiny-linux",
                    "billing_cycle": "monthly",
                }
                return client.post("/api/v1/instances", json=body, headers=tokens[n]).status_code

            with ThreadPoolExecutor(max_workers=20) as pool:
                statuses = sorted(pool.map(order, range(20)))

        assert statuses.count(202) == 4, statuses
        assert statuses.count(503) == 16, statuses
        with Session(engine) as db:
            node = db.get(Node, node_id)
            assert node is not None
            assert node.allocated_vcpus == 4
            live = db.scalar(select(func.count(Instance.id)).where(Instance.deleted_at.is_(None)))
            assert live == 4
            addresses = db.scalars(select(Instance.ip_address)).all()
            assert len(set(addresses)) == 4
    finally:
        engine.dispose()
