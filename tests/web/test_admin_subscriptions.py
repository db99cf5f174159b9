"""The staff list of subscriptions (``/admin/subscriptions``): every customer's, past-due ones
first with their grace deadline, each leading to its customer; live on subscription changes."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from tests.web.conftest import log_in
from vmcloud.accounts.models import User
from vmcloud.billing import flows
from vmcloud.billing import subscriptions as subs
from vmcloud.billing.models import Subscription
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.web.admin import subscriptions as page

ROW = re.compile(r'id="admin-sub-([0-9a-f-]{36})"')

Buy = Callable[[User, str], Subscription]


@pytest.fixture
def buy(db: Session) -> Buy:
    make_node(db, vcpus=64, memory_mb=65536, disk_gb=1000)
    make_pool(db, "198.18.64.0/24")
    plan = make_product(
        db,
        slug="staff-subs",
        specs_json={"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
        pricing_json={"monthly": "4.00"},
    )

    def order(user: User, name: str) -> Subscription:
        body = InstanceCreate(
            name=name,
            product=plan.slug,
            region="local",
            image="tiny-linux",
            billing_cycle="monthly",
        )
        instance = flows.order_instance(db=db, owner=user, body=body)
        db.flush()
        sub = subs.live_for_instance(db=db, instance_id=instance.id, lock=False)
        assert sub is not None
        return sub

    return order


def test_past_due_listed_first_with_the_grace_deadline(
    panel: TestClient, db: Session, buy: Buy
) -> None:
    owners = [make_user(db, balance="10.00", email=f"owner{i}@example.com") for i in range(3)]
    bought = [buy(owner, f"vm-{i}") for i, owner in enumerate(owners)]
    late = bought[0]  # the oldest: newest first would list it last
    late.status, late.amount_due = "past_due", late.price
    late.past_due_since = datetime(2026, 1, 10, 12, 0)
    db.flush()
    log_in(panel, make_user(db, role="support").username, PASSWORD)

    answer = panel.get("/admin/subscriptions")

    assert answer.status_code == 200
    ids = ROW.findall(answer.text)
    assert ids == [str(late.id), str(bought[2].id), str(bought[1].id)]
    # Grace days default to 7: the deadline is a week after it fell due.
    assert "2026-01-17 12:00 UTC" in answer.text
    assert f'href="/admin/users/{owners[0].id}">owner0@example.com' in answer.text
    only_late = panel.get("/admin/subscriptions?status=past_due").text
    assert ROW.findall(only_late) == [str(late.id)]


def test_bad_filters_are_refused(panel: TestClient, db: Session) -> None:
    log_in(panel, make_user(db, role="admin").username, PASSWORD)
    html = {"accept": "text/html"}
    assert panel.get("/admin/subscriptions?status=late", headers=html).status_code == 422
    assert panel.get("/admin/subscriptions?cursor=%%%", headers=html).status_code == 422


def test_the_live_list_follows_state(db: Session, buy: Buy) -> None:
    sub = buy(make_user(db, balance="10.00"), "live-vm")
    before = page.live_list(db, "", None)
    assert before is not None and 'hx-swap-oob="true"' in before and "active" in before
    sub.status = "past_due"
    db.flush()
    after = page.live_list(db, "", None)
    assert after is not None and "past due" in after
    assert page.live_list(db, "", "not-a-cursor") is None
