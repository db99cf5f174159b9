"""The billing page's figures: the runway rule, this month's charges per instance, recent
top-ups."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from tests.billing.conftest import Buy
from tests.factories.accounts import make_user
from tests.factories.billing import pending_payment
from vmcloud.billing import flows, spending
from vmcloud.billing.models import Subscription
from vmcloud.core.clock import utcnow


def sub(**values: Any) -> Subscription:
    base: dict[str, Any] = {"status": "active", "auto_renew": True, "price": Decimal("0")}
    return Subscription(**{**base, **values})


def test_runway_sums_the_daily_cost_of_what_renews() -> None:
    subs = [
        sub(type="hourly", rate=Decimal("0.01")),  # 0.24 a day
        sub(type="monthly", price=Decimal("36.50")),  # 1.20 a day
        sub(type="yearly", price=Decimal("365.00")),  # 1.00 a day
        sub(type="monthly", price=Decimal("100"), auto_renew=False),  # renews no more
        sub(type="monthly", price=Decimal("100"), status="cancelled"),
    ]
    runway = spending.runway_of(Decimal("24.40"), subs)
    assert runway.daily == Decimal("2.44")
    assert runway.days == 10


def test_runway_rounds_down_and_caps_hourly_at_the_monthly_price() -> None:
    capped = sub(type="hourly", rate=Decimal("1.00"), monthly_cap=Decimal("30.42"))
    assert spending.daily_cost(capped) == Decimal("30.42") * 12 / 365  # not 24.00
    runway = spending.runway_of(Decimal("9.99"), [sub(type="hourly", rate=Decimal("0.10"))])
    assert (runway.daily, runway.days) == (Decimal("2.40"), 4)  # 4.16 days


def test_past_due_debt_comes_off_the_balance_first() -> None:
    subs = [
        sub(type="monthly", price=Decimal("36.50"), status="past_due", amount_due=Decimal("36.50")),
        sub(type="monthly", price=Decimal("36.50")),
    ]
    assert spending.runway_of(Decimal("40.30"), subs).days == 1  # (40.30 - 36.50) / 2.40
    assert spending.runway_of(Decimal("10.00"), subs).days == 0


def test_no_runway_when_nothing_charges() -> None:
    assert spending.runway_of(Decimal("50"), []) == spending.Runway(Decimal("0.00"), None)


def test_month_to_date_is_charges_less_refunds_per_instance(db: Session, buy: Buy) -> None:
    user = make_user(db, balance="100.00")
    kept = buy(user, "monthly", name="kept")  # 4.00
    gone = buy(user, "monthly", name="gone")  # 4.00, then unused days back
    flows.delete_instance(db=db, instance=gone)
    db.flush()
    spent = spending.month_to_date(db=db, user_id=user.id)
    assert spent[0] == spending.InstanceSpend(kept.id, "kept", Decimal("4.00"))
    assert spent[1].name == "gone" and Decimal(0) <= spent[1].amount < Decimal("4.00")
    next_month = utcnow().replace(day=1) + timedelta(days=40)
    assert spending.month_to_date(db=db, user_id=user.id, now=next_month) == []
    other = make_user(db)
    assert spending.month_to_date(db=db, user_id=other.id) == []


def test_recent_top_ups_are_pending_ones_and_the_last_days(db: Session) -> None:
    user = make_user(db)
    old = pending_payment(db, user.id, "sandbox", "sbx_" + "1" * 32)
    old.created_at = datetime(2020, 1, 1)
    settled = pending_payment(db, user.id, "sandbox", "sbx_" + "2" * 32)
    settled.created_at, settled.status = datetime(2020, 1, 2), "failed"
    fresh = pending_payment(db, user.id, "sandbox", "sbx_" + "3" * 32)
    db.flush()
    assert spending.recent_top_ups(db=db, user_id=user.id) == [fresh, old]
