"""Billing fixtures: a fake node to buy instances on, and billing runs at a chosen time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from vmcloud.accounts.models import User
from vmcloud.billing import flows
from vmcloud.billing import run as run_module
from vmcloud.catalog.models import Product
from vmcloud.compute.models import Instance, Node
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.db.session import unit_of_work

Buy = Callable[..., Instance]
Run = Callable[[datetime], run_module.RunSummary]


@pytest.fixture
def node(db: Session) -> Node:
    node = make_node(db, vcpus=512, memory_mb=1024 * 1024, disk_gb=100_000)
    make_pool(db, "198.18.64.0/22")
    return node


@pytest.fixture
def plan(db: Session) -> Product:
    """A plan with a sub-cent hourly rate: 0.0074/hour, capped at 4.00 a month."""
    return make_product(
        db,
        slug="tiny-rate",
        specs_json={"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
        pricing_json={"hourly": "0.0074", "monthly": "4.00", "yearly": "40.00"},
    )


@pytest.fixture
def buy(db: Session, node: Node, plan: Product) -> Buy:
    def buy(user: User, cycle: str = "monthly", **overrides: Any) -> Instance:
        body = {
            "name": "vm",
            "product": plan.slug,
            "region": "local",
            "image": "tiny-linux",
            "billing_cycle": cycle,
        }
        body.update(overrides)
        instance = flows.order_instance(db=db, owner=user, body=InstanceCreate(**body))
        db.flush()
        return instance

    return buy


@pytest.fixture
def billing_run(session_factory: sessionmaker[Session], db: Session) -> Run:
    """A billing run at ``now``, committing its batches (to SAVEPOINTs of the test)."""

    batch = partial(unit_of_work, session_factory)

    def run(now: datetime) -> run_module.RunSummary:
        db.flush()
        summary = run_module.run(unit_of_work=batch, now=now)
        db.expire_all()
        return summary

    return run
