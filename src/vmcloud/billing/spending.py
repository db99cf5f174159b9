"""What a customer spends, for the billing pages: this month's charges per instance, recent
top-ups, and the *runway*, how long the balance lasts at the current rate of spending.

The runway rule (docs/panel.md, "Billing"):

- the daily burn is the sum over the customer's subscriptions in force (active or past due)
  that renew: hourly ones cost ``rate * 24`` a day, but never more than their monthly cap
  spread over the year (``cap * 12 / 365``); monthly ones ``price * 12 / 365``; yearly ones
  ``price / 365``. A subscription whose renewal is cancelled charges nothing more;
- what past-due subscriptions owe is taken from the balance first (money coming in pays them);
- the runway is the whole number of days the rest covers at that burn, rounded down; none
  when nothing charges.

It is an estimate: monthly and yearly plans are paid up front, so the balance is actually
taken at each renewal, not a little every day.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from vmcloud.billing.ledger import CENT
from vmcloud.billing.models import Subscription, Transaction
from vmcloud.billing.subscriptions import LIVE
from vmcloud.compute import service as compute
from vmcloud.core.clock import utcnow
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import GRACE_DAYS

DAYS_A_YEAR = Decimal(365)
RECENT = timedelta(days=1)


@dataclass(frozen=True)
class Runway:
    daily: Decimal  # what the subscriptions in force cost a day, rounded to cents
    days: int | None  # whole days the balance lasts; None when nothing charges


def daily_cost(sub: Subscription) -> Decimal:
    """What one subscription costs a day (exact), under the runway rule."""
    if sub.type == "hourly":
        per_day = (sub.rate or Decimal(0)) * 24
        if sub.monthly_cap is not None:
            per_day = min(per_day, sub.monthly_cap * 12 / DAYS_A_YEAR)
        return per_day
    if sub.type == "monthly":
        return sub.price * 12 / DAYS_A_YEAR
    return sub.price / DAYS_A_YEAR


def runway_of(balance: Decimal, subs: Iterable[Subscription]) -> Runway:
    """The runway of ``balance`` for the customer's subscriptions ``subs`` (any status)."""
    live = [s for s in subs if s.status in LIVE and s.auto_renew is not False]
    daily = sum((daily_cost(s) for s in live), Decimal(0))
    owed = sum((s.amount_due or Decimal(0) for s in live if s.status == "past_due"), Decimal(0))
    if daily <= 0:
        return Runway(daily=Decimal("0.00"), days=None)
    left = max(balance - owed, Decimal(0))
    return Runway(daily=daily.quantize(CENT, rounding=ROUND_HALF_UP), days=int(left // daily))


def runway(*, db: Session, user_id: uuid.UUID, balance: Decimal) -> Runway:
    subs = db.scalars(
        select(Subscription).where(Subscription.user_id == user_id, Subscription.status.in_(LIVE))
    )
    return runway_of(balance, subs)


@dataclass(frozen=True)
class InstanceSpend:
    instance_id: uuid.UUID | None
    name: str | None
    amount: Decimal  # charges less refunds


def month_to_date(
    *, db: Session, user_id: uuid.UUID, now: datetime | None = None
) -> list[InstanceSpend]:
    """This calendar month's (UTC) charges less refunds, per instance, largest first."""
    start = (now or utcnow()).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    signed = case((Transaction.type == "refund", -Transaction.amount), else_=Transaction.amount)
    total = func.sum(signed).label("amount")
    rows = db.execute(
        select(Subscription.instance_id, total)
        .select_from(Transaction)
        .join(Subscription, Subscription.id == Transaction.subscription_id)
        .where(
            Transaction.user_id == user_id,
            Transaction.type.in_(("charge", "refund")),
            Transaction.status == "completed",
            Transaction.created_at >= start,
        )
        .group_by(Subscription.instance_id)
        .order_by(total.desc(), Subscription.instance_id)
    ).all()
    names = compute.instance_names(db=db, instance_ids=[row.instance_id for row in rows])
    return [
        InstanceSpend(row.instance_id, names.get(row.instance_id), Decimal(row.amount))
        for row in rows
    ]


def recent_top_ups(
    *, db: Session, user_id: uuid.UUID, now: datetime | None = None, limit: int = 20
) -> list[Transaction]:
    """The customer's top-ups still pending, and those settled in the last day, newest first."""
    since = (now or utcnow()) - RECENT
    return list(
        db.scalars(
            select(Transaction)
            .where(
                Transaction.user_id == user_id,
                Transaction.type == "payment",
                or_(Transaction.status == "pending", Transaction.created_at >= since),
            )
            .order_by(Transaction.created_at.desc(), Transaction.id.desc())
            .limit(limit)
        )
    )


def grace_end(*, db: Session, sub: Subscription) -> datetime | None:
    """When a past-due subscription ends unpaid (and its instance is deleted)."""
    if sub.status != "past_due" or sub.past_due_since is None:
        return None
    return sub.past_due_since + timedelta(days=site_settings.get(db, GRACE_DAYS))
