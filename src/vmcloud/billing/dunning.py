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

from vmcloud.accounts import service as accounts
from vmcloud.audit import service as audit
from vmcloud.billing import ledger, periods
from vmcloud.billing.models import Subscription
from vmcloud.billing.subscriptions import announce, charge
from vmcloud.compute import service as compute
from vmcloud.core import jobs
from vmcloud.core.clock import utcnow
from vmcloud.core.logging import get_logger

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
    announce(db, sub)
    _suspend_and_notify(db, sub)


def _suspend_and_notify(db: Session, sub: Subscription) -> None:
    if sub.instance_id is not None:
        _suspend(db, sub.instance_id)
    jobs.defer(db, "billing.send_past_due_email", subscription_id=str(sub.id))
    log.info("subscription.past_due", subscription_id=str(sub.id), due=str(sub.amount_due))


def settle_debts(*, db: Session, user_id: uuid.UUID, now: datetime | None = None) -> int:
    """Pay past-due subscriptions oldest first while the balance covers them, each one paid
    active again and its instance resumed; returns how many were paid. Call after money came
    in. Locks instances before subscriptions, as deleting an instance does."""
    now = now or utcnow()
    due = db.execute(
        select(Subscription.id, Subscription.instance_id)
        .where(
            Subscription.user_id == user_id,
            Subscription.status == "past_due",
            Subscription.auto_renew.is_not(False),
        )
        .order_by(Subscription.past_due_since, Subscription.id)
    ).all()
    if not due:
        return 0
    instance_ids = sorted(row.instance_id for row in due if row.instance_id is not None)
    instances = {i: compute.get_instance(db=db, instance_id=i, lock=True) for i in instance_ids}
    accounts.lock_user(db=db, user_id=user_id)
    paid = 0
    for row in due:
        sub = db.get(Subscription, row.id, with_for_update=True, populate_existing=True)
        if sub is None or sub.status != "past_due" or sub.past_due_since is None:
            continue
        if not _pay(db, sub, now):
            break
        paid += 1
        instance = instances.get(sub.instance_id) if sub.instance_id else None
        if instance is not None:
            compute.resume_instance(db=db, instance=instance)
    db.flush()
    return paid


def _pay(db: Session, sub: Subscription, now: datetime) -> bool:
    """Charge a past-due subscription's debt and start a new period now; False (and nothing
    changed) when the balance does not cover it."""
    assert sub.past_due_since is not None
    key = periods.period_key("due", sub.past_due_since)
    try:
        with db.begin_nested():
            if sub.type == "hourly":
                start = periods.floor_hour(now)
                # month_charged belongs to the month of the last billed hour.
                last = sub.period_start - timedelta(hours=1)
                if (start.year, start.month) != (last.year, last.month):
                    sub.month_charged = Decimal(0)
                sub.period_start, sub.period_end = start, start + timedelta(hours=1)
            else:
                sub.period_start, sub.period_end = now, periods.next_period_end(now, sub.type)
            charge(db, sub, sub.amount_due or Decimal(0), key, now)
    except ledger.InsufficientFundsError:
        db.refresh(sub)
        return False
    audit.label(sub, "subscription.resume")
    sub.status = "active"
    sub.amount_due = None
    sub.past_due_since = None
    announce(db, sub)
    return True


def enforce_suspensions(*, db: Session) -> int:
    """Suspend instances whose subscription is past due but that are not suspended yet (one
    that was still provisioning, or was locked, when its subscription fell due)."""
    instance_ids = compute.live_instances_among(
        db=db,
        among=select(Subscription.instance_id).where(Subscription.status == "past_due"),
        statuses=compute.SUSPENDABLE,
        limit=500,
    )
    return sum(_suspend(db, instance_id) for instance_id in instance_ids)


def _suspend(db: Session, instance_id: uuid.UUID) -> int:
    # SKIP LOCKED: an instance busy in a request (being deleted, say) is left for the next run
    # rather than waited for, so the billing run never deadlocks with a request.
    instance = compute.get_instance(db=db, instance_id=instance_id, lock=True, skip_locked=True)
    if instance is None:
        return 0
    return int(compute.suspend_instance(db=db, instance=instance, reason="unpaid"))


def charge_period(db: Session, sub: Subscription, now: datetime) -> bool:
    """Renew a monthly or yearly subscription for the next period; False if unpaid."""
    start = sub.period_end
    try:
        with db.begin_nested():
            sub.period_start, sub.period_end = start, periods.next_period_end(start, sub.type)
            charge(db, sub, sub.price, periods.period_key("period", start), now)
    except ledger.InsufficientFundsError:
        db.refresh(sub)
        return False
    announce(db, sub)
    return True
