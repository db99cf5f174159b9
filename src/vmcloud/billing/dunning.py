"""Unpaid subscriptions: suspension, payment of the debt, and the end after the grace days.

- A subscription the balance does not cover (at renewal or in the hourly run) is ``past_due``
  with ``amount_due`` and ``past_due_since``; its instance is ``suspended`` (VM stopped) and
  the customer is emailed.
- Money coming in (a completed top-up, a credit) pays past-due subscriptions oldest first;
  each paid one is active again, with a new period from now, and its instance starts again.
  The hours or days spent suspended are not charged.
- After ``billing.grace_days`` unpaid, the instance is deleted and the subscription
  ``expired``; the debt is written off (a balance never goes below zero).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.billing import hourly, ledger
from vmcloud.billing.models import Subscription
from vmcloud.billing.subscriptions import MONTHS, _charge, _end, _period_key, add_months
from vmcloud.compute import service as compute
from vmcloud.core import jobs
from vmcloud.core.logging import get_logger
from vmcloud.site_settings import service as site_settings

log = get_logger(__name__)


def mark_past_due(*, db: Session, subscription_ids: list[uuid.UUID]) -> None:
    """Follow-up of subscriptions the hourly run just made past due (in SQL, so the audit row
    is written here): suspend, then email."""
    for sub in db.scalars(select(Subscription).where(Subscription.id.in_(subscription_ids))):
        if sub.status != "past_due":
            continue
        audit.record(
            db=db,
            action="subscription.past_due",
            entity_type="subscription",
            entity_id=sub.id,
            new={"status": "past_due", "amount_due": str(sub.amount_due)},
        )
        _suspend_and_notify(db, sub)


def past_due(db: Session, sub: Subscription, amount: Decimal, now: datetime) -> None:
    audit.label(sub, "subscription.past_due")
    sub.status = "past_due"
    sub.amount_due = amount
    sub.past_due_since = now
    db.flush()
    _suspend_and_notify(db, sub)


def _suspend_and_notify(db: Session, sub: Subscription) -> None:
    from vmcloud.billing import tasks

    if sub.instance_id is not None:
        instance = compute.get_instance(db=db, instance_id=sub.instance_id, lock=True)
        if instance is not None:
            compute.suspend_instance(db=db, instance=instance, reason="unpaid")
    jobs.defer(db, tasks.send_past_due_email, subscription_id=str(sub.id))
    log.info("subscription.past_due", subscription_id=str(sub.id), due=str(sub.amount_due))


def settle_debts(*, db: Session, user_id: uuid.UUID, now: datetime) -> int:
    """Pay past-due subscriptions oldest first while the balance covers them; returns how
    many were paid."""
    db.execute(select(User.id).where(User.id == user_id).with_for_update())
    paid = 0
    subs = db.scalars(
        select(Subscription)
        .where(Subscription.user_id == user_id, Subscription.status == "past_due")
        .order_by(Subscription.past_due_since, Subscription.id)
        .with_for_update()
    ).all()
    for sub in subs:
        if sub.past_due_since is None:
            continue
        due = sub.amount_due or Decimal(0)
        key = _period_key("due", sub.past_due_since)
        try:
            with db.begin_nested():
                if sub.type == "hourly":
                    start = hourly.floor_hour(now)
                    if (start.year, start.month) != (sub.period_start.year, sub.period_start.month):
                        sub.month_charged = Decimal(0)
                    sub.period_start, sub.period_end = start, start + timedelta(hours=1)
                else:
                    sub.period_start, sub.period_end = now, add_months(now, MONTHS[sub.type])
                _charge(db, sub, due, key, now)
        except ledger.InsufficientFundsError:
            db.refresh(sub)
            break
        audit.label(sub, "subscription.resume")
        sub.status = "active"
        sub.amount_due = None
        sub.past_due_since = None
        paid += 1
        if sub.instance_id is not None:
            instance = compute.get_instance(db=db, instance_id=sub.instance_id, lock=True)
            if instance is not None:
                compute.resume_instance(db=db, instance=instance)
    db.flush()
    return paid


def expire_overdue(*, db: Session, now: datetime, batch: int = 200) -> int:
    """End subscriptions unpaid for longer than the grace days and delete their instances."""
    grace = int(site_settings.get_value(db=db, key="billing.grace_days", default=7))
    subs = db.scalars(
        select(Subscription)
        .where(
            Subscription.status == "past_due",
            Subscription.past_due_since <= now - timedelta(days=grace),
        )
        .order_by(Subscription.past_due_since)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    for sub in subs:
        _end(sub, "expired", now)
        db.flush()
        end_instance(db, sub, "unpaid")
    return len(subs)


def end_instance(db: Session, sub: Subscription, reason: str) -> None:
    if sub.instance_id is None:
        return
    instance = compute.get_instance(db=db, instance_id=sub.instance_id, lock=True)
    if instance is not None and instance.status not in compute.NOT_DELETABLE:
        compute.delete_instance(db=db, instance=instance, reason=reason)


def charge_period(db: Session, sub: Subscription, now: datetime) -> bool:
    """Renew a monthly or yearly subscription for the next period; False if unpaid."""
    start = sub.period_end
    try:
        with db.begin_nested():
            sub.period_start, sub.period_end = start, add_months(start, MONTHS[sub.type])
            _charge(db, sub, sub.price, _period_key("period", start), now)
    except ledger.InsufficientFundsError:
        db.refresh(sub)
        return False
    return True
