"""Monthly and yearly subscriptions whose period is over: renewed, or ended with their
instance, or past due (a step of the billing run, ``billing.run``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.billing import dunning, flows
from vmcloud.billing.models import Subscription
from vmcloud.billing.subscriptions import end


def renew_due(*, db: Session, now: datetime, batch: int = 200) -> tuple[int, int, int]:
    """Monthly and yearly subscriptions whose period is over: renewed (charged again) when
    ``auto_renew``, else ended with their instance. Returns (renewed, unpaid, ended)."""
    subs = db.scalars(
        select(Subscription)
        .where(
            Subscription.type.in_(("monthly", "yearly")),
            Subscription.status == "active",
            Subscription.period_end <= now,
        )
        .order_by(Subscription.period_end, Subscription.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    renewed = unpaid = ended = 0
    for sub in subs:
        if not sub.auto_renew:
            end(sub, "cancelled", now)
            db.flush()
            flows.end_instance(db, sub, "cancelled")
            ended += 1
        elif dunning.charge_period(db, sub, now):
            renewed += 1
        else:
            dunning.past_due(db, sub, sub.price, now)
            unpaid += 1
    return renewed, unpaid, ended
