"""``flows.deletion_refund`` (what the instance page says a delete gives back) equals what
``flows.delete_instance`` then refunds."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.billing.conftest import Buy
from tests.factories.accounts import make_user
from vmcloud.accounts.models import User
from vmcloud.billing import flows
from vmcloud.billing.models import Subscription
from vmcloud.compute import service as compute


def _balance(db: Session, user: User) -> Decimal:
    db.refresh(user)
    return Decimal(user.balance)


@pytest.mark.parametrize(
    ("cycle", "used", "state"),
    [
        ("monthly", timedelta(days=10, hours=3), "running"),
        ("yearly", timedelta(days=100), "stopped"),
        ("monthly", timedelta(hours=1), "error"),  # never came up: everything back
        ("hourly", timedelta(hours=5), "running"),  # charged in arrears: nothing back
    ],
)
def test_the_refund_shown_is_the_refund_given(
    db: Session, buy: Buy, cycle: str, used: timedelta, state: str
) -> None:
    user = make_user(db, balance="500.00")
    instance = buy(user, cycle)
    sub = db.scalar(select(Subscription).where(Subscription.instance_id == instance.id))
    assert sub is not None
    if cycle != "hourly":
        sub.period_start -= used
        sub.period_end -= used
    if state != "error":
        compute.set_status(instance, "running")
        instance.started_at = sub.period_start
    compute.set_status(instance, state)
    db.flush()
    shown = flows.deletion_refund(db=db, instance=instance)
    before = _balance(db, user)
    flows.delete_instance(db=db, instance=instance)
    if cycle == "hourly":
        assert shown == Decimal("0.00")
    else:
        assert shown > 0
        assert _balance(db, user) - before == shown
