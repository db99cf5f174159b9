"""Many purchases at once against one balance, and one Idempotency-Key sent many times at
once: the balance decides exactly, and a key has exactly one effect."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from tests.helpers import bearer, login
from vmcloud.accounts.models import User
from vmcloud.app import create_app
from vmcloud.billing import ledger
from vmcloud.billing.models import Subscription, Transaction
from vmcloud.compute.models import Instance
from vmcloud.config import Settings
from vmcloud.db.session import make_engine
from vmcloud.site_settings import service as site_settings


@pytest.fixture
def own_engine(settings: Settings, fresh_database_url: str) -> Iterator[Engine]:
    engine = make_engine(settings.model_copy(update={"database_url": fresh_database_url}))
    yield engine
    engine.dispose()


def _app(settings: Settings, engine: Engine, tmp_path: Path) -> TestClient:
    own = settings.model_copy(
        update={
            "data_dir": tmp_path,
            "rate_limit_namespace": f"c{uuid.uuid4().hex[:8]}:",
            "db_pool_size": 30,
        }
    )
    return TestClient(create_app(own, engine=engine), client=("198.51.100.98", 50000))


def _setup(engine: Engine, balance: str) -> str:
    with Session(engine) as db:
        make_node(db, vcpus=1024, memory_mb=1024 * 1024, disk_gb=100_000)
        make_pool(db, "198.18.128.0/22")
        make_product(
            db,
            slug="two-dollar",
            specs_json={"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
            pricing_json={"monthly": "2.00"},
        )
        site_settings.update_setting(db=db, key="compute.max_instances_per_user", value=1000)
        username = make_user(db, balance=balance).username
        db.commit()
    return username


def _body(n: int) -> dict[str, str]:
    return {
        "name": f"rush-{n}",
        "product": "two-dollar",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
    }


def test_a_hundred_purchases_against_fifty_purchases_of_balance(
    settings: Settings, own_engine: Engine, tmp_path: Path
) -> None:
    username = _setup(own_engine, "100.00")  # fifty plans of 2.00
    with _app(settings, own_engine, tmp_path) as client:
        headers = bearer(login(client, username, PASSWORD))

        def order(n: int) -> int:
            return client.post("/api/v1/instances", json=_body(n), headers=headers).status_code

        with ThreadPoolExecutor(max_workers=25) as pool:
            statuses = list(pool.map(order, range(100)))

    assert statuses.count(202) == 50, statuses
    assert statuses.count(402) == 50, statuses
    with Session(own_engine) as db:
        assert db.scalar(select(func.count()).select_from(Instance)) == 50
        assert db.scalar(select(func.count()).select_from(Subscription)) == 50
        charges = db.scalars(select(Transaction.amount).where(Transaction.type == "charge"))
        assert sum(charges, Decimal(0)) == Decimal("100.00")
        balance = db.scalar(select(func.sum(User.balance)))
        assert balance == 0
        assert ledger.verify(db=db) == []


def test_one_idempotency_key_sent_twenty_times_at_once_has_one_effect(
    settings: Settings, own_engine: Engine, tmp_path: Path
) -> None:
    username = _setup(own_engine, "100.00")
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    with _app(settings, own_engine, tmp_path) as client:
        headers = bearer(login(client, username, PASSWORD)) | key

        def order(_: int) -> tuple[int, str, str | None]:
            response = client.post("/api/v1/instances", json=_body(1), headers=headers)
            return (
                response.status_code,
                response.json()["id"],
                response.headers.get("Idempotent-Replayed"),
            )

        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(order, range(20)))
        # The same key with another body is refused.
        other = client.post("/api/v1/instances", json=_body(2), headers=headers)

    assert {status for status, _, _ in results} == {202}
    assert len({instance_id for _, instance_id, _ in results}) == 1
    assert [replayed for _, _, replayed in results].count(None) == 1
    assert other.status_code == 409
    assert other.json()["type"].endswith("/idempotency-key-reused")
    with Session(own_engine) as db:
        assert db.scalar(select(func.count()).select_from(Instance)) == 1
        assert (
            db.scalar(
                select(func.count()).select_from(Transaction).where(Transaction.type == "charge")
            )
            == 1
        )
        assert ledger.verify(db=db) == []


def test_concurrent_orders_each_with_its_own_key_never_deadlock(
    settings: Settings, own_engine: Engine, tmp_path: Path
) -> None:
    # Each key row's foreign key takes a KEY SHARE lock on the user row first; a per-user
    # FOR UPDATE after it deadlocked two such requests against each other (500s).
    username = _setup(own_engine, "4.00")  # two plans of 2.00
    statuses: list[int] = []
    with _app(settings, own_engine, tmp_path) as client:
        headers = bearer(login(client, username, PASSWORD))
        for _round in range(5):  # the race does not lose every time: give it several chances

            def order(n: int) -> int:
                keyed = headers | {"Idempotency-Key": f"k-{uuid.uuid4()}"}
                return client.post("/api/v1/instances", json=_body(n), headers=keyed).status_code

            with ThreadPoolExecutor(max_workers=6) as pool:
                statuses += list(pool.map(order, range(6)))

    assert set(statuses) <= {202, 402}, statuses
    assert statuses.count(202) == 2, statuses
    with Session(own_engine) as db:
        assert db.scalar(select(func.count()).select_from(Instance)) == 2
        assert db.scalar(select(func.sum(User.balance))) == 0
        assert ledger.verify(db=db) == []
