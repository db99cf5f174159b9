"""Subscriptions: what instances cost, charged up front (monthly, yearly) or in arrears
(hourly, see ``billing.hourly``), renewed, suspended when unpaid and ended.

Every function takes ``now`` so that a run can be driven by a controllable clock; jobs and
requests pass the real time.

Every change of a subscription's state (started, renewed, past due, paid again, renewal
cancelled, ended) calls :func:`announce` in its transaction, so open panel pages follow; the
hourly run's set-based statement announces its own (``billing.hourly``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session, object_session

from vmcloud.accounts.models import STAFF_ROLES, User
from vmcloud.audit import service as audit
from vmcloud.billing import alerts, hourly, ledger, periods
from vmcloud.billing.models import Subscription, Transaction
from vmcloud.core import events
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ConflictError, NotFoundError
from vmcloud.core.pagination import PageParams, paginate
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CURRENCY, HOURLY_MIN_BALANCE, PRORATED_REFUNDS

LIVE = ("active", "past_due")


def announce(db: Session, sub: Subscription) -> None:
    """Tell open panel pages that ``sub`` changed, once this transaction commits."""
    events.announce(db, kind="subscription", user_id=sub.user_id, id=sub.id)


# -- starting ------------------------------------------------------------------------------


def start(
    *,
    db: Session,
    user_id: uuid.UUID,
    instance_id: uuid.UUID,
    pricing: dict[str, Any],
    cycle: str,
    now: datetime | None = None,
) -> Subscription:
    """The subscription of a new instance, in the caller's transaction. Monthly and yearly are
    charged now (402 and nothing written when the balance does not cover it); hourly needs a
    balance of ``billing.hourly_min_balance`` and is charged by the hourly run."""
    now = now or utcnow()
    sub = Subscription(
        id=uuid.uuid4(),
        user_id=user_id,
        instance_id=instance_id,
        type=cycle,
        currency=site_settings.get(db, CURRENCY),
        status="active",
        auto_renew=True,
        accrued=Decimal(0),
        month_charged=Decimal(0),
    )
    if cycle == "hourly":
        rate = Decimal(str(pricing["hourly"]))
        minimum = site_settings.get(db, HOURLY_MIN_BALANCE)
        balance = db.scalar(select(User.balance).where(User.id == user_id)) or Decimal(0)
        if balance < minimum:
            raise ledger.InsufficientFundsError(
                f"Hourly billing needs a balance of at least {minimum:.2f}; top up first."
            )
        sub.rate = rate
        sub.price = rate.quantize(ledger.CENT, rounding=ROUND_HALF_UP)
        monthly = pricing.get("monthly")
        sub.monthly_cap = Decimal(str(monthly)) if monthly is not None else None
        sub.period_start = periods.floor_hour(now)
        sub.period_end = sub.period_start + timedelta(hours=1)
    else:
        sub.price = Decimal(str(pricing[cycle])).quantize(ledger.CENT)
        sub.period_start = now
        sub.period_end = periods.next_period_end(now, cycle)
    audit.label(sub, "subscription.create")
    db.add(sub)
    db.flush()
    announce(db, sub)
    if cycle != "hourly":
        charge(db, sub, sub.price, periods.period_key("period", sub.period_start), now)
    return sub


def charge(db: Session, sub: Subscription, amount: Decimal, key: str, now: datetime) -> None:
    if amount <= 0:
        return
    before = db.scalar(select(User.balance).where(User.id == sub.user_id)) or Decimal(0)
    ledger.post(
        db=db,
        user_id=sub.user_id,
        type_="charge",
        amount=amount,
        currency=sub.currency or site_settings.get(db, CURRENCY),
        subscription_id=sub.id,
        payment_method="balance",
        period_key=key,
        metadata={
            "kind": sub.type,
            "instance_id": str(sub.instance_id),
            "period_start": sub.period_start.isoformat(),
            "period_end": sub.period_end.isoformat(),
        },
    )
    if alerts.crossed(db, before=before, after=before - amount):
        alerts.warn(db, [sub.user_id])


# -- reading and cancelling --------------------------------------------------------------------


# Loaders named for what the caller means to do with the subscription; 404 (never 403) when
# the caller may not. Routes take them as dependencies (``billing.deps``).


def _load(
    db: Session, subscription_id: uuid.UUID, user: User, *, any_for: tuple[str, ...], lock: bool
) -> Subscription:
    stmt = select(Subscription).where(Subscription.id == subscription_id)
    if user.role not in any_for:
        stmt = stmt.where(Subscription.user_id == user.id)
    sub = db.scalar(stmt.with_for_update() if lock else stmt)
    if sub is None:
        raise NotFoundError("There is no such subscription.")
    return sub


def get_visible(*, db: Session, subscription_id: uuid.UUID, user: User) -> Subscription:
    """To read: the owner's; staff read every subscription."""
    return _load(db, subscription_id, user, any_for=STAFF_ROLES, lock=False)


def get_changeable(*, db: Session, subscription_id: uuid.UUID, user: User) -> Subscription:
    """To change (cancel), locked for the change: the owner's; admins act on any."""
    return _load(db, subscription_id, user, any_for=("admin",), lock=True)


def list_subscriptions(
    *,
    db: Session,
    params: PageParams,
    user_id: uuid.UUID | None = None,
    status: str | None = None,
    instance_id: uuid.UUID | None = None,
    past_due_first: bool = False,
) -> tuple[list[Subscription], str | None]:
    """Newest first (``past_due_first``: the past-due ones, newest first, then the rest);
    ``user_id`` scopes it to one customer (their own view). A cursor of one order is a 422
    in the other."""
    stmt = select(Subscription)
    if user_id is not None:
        stmt = stmt.where(Subscription.user_id == user_id)
    if status:
        stmt = stmt.where(Subscription.status == status)
    if instance_id is not None:
        stmt = stmt.where(Subscription.instance_id == instance_id)
    order_by: tuple[Any, ...] = (Subscription.created_at, Subscription.id)
    if past_due_first:
        order_by = (Subscription.past_due_rank, *order_by)
    return paginate(db, stmt, order_by=order_by, params=params)


def live_for_instance(
    *, db: Session, instance_id: uuid.UUID, lock: bool = True
) -> Subscription | None:
    stmt = select(Subscription).where(
        Subscription.instance_id == instance_id, Subscription.status.in_(LIVE)
    )
    return db.scalar(stmt.with_for_update() if lock else stmt)


def cancel(*, db: Session, sub: Subscription, now: datetime | None = None) -> Subscription:
    """Stop renewal: the instance keeps running until ``period_end`` (for hourly billing, the
    end of the current hour), then it is deleted. A past-due subscription has nothing paid
    left to run out: it ends now, its debt written off, and its instance is deleted."""
    if sub.status not in LIVE or not sub.auto_renew:
        raise ConflictError(
            "This subscription is already cancelled or has ended.",
            type="invalid-state",
            title="Not allowed in this state",
        )
    now = now or utcnow()
    if sub.status == "past_due":
        # Its instance is deleted by the caller (``flows.cancel_subscription``).
        end(sub, "cancelled", now)
        db.flush()
        return sub
    audit.label(sub, "subscription.cancel")
    sub.auto_renew = False
    sub.cancelled_at = now
    db.flush()
    announce(db, sub)
    return sub


# -- ending --------------------------------------------------------------------------------


def net_charged(db: Session, sub_id: uuid.UUID) -> Decimal:
    """What the subscription has charged, less what was given back."""
    signed = case((Transaction.type == "refund", -Transaction.amount), else_=Transaction.amount)
    total = db.scalar(
        select(func.coalesce(func.sum(signed), 0)).where(
            Transaction.subscription_id == sub_id,
            Transaction.type.in_(("charge", "refund")),
            Transaction.status == "completed",
        )
    )
    return Decimal(total or 0)


def refund(
    db: Session,
    sub: Subscription,
    amount: Decimal,
    key: str,
    reason: str,
    of: Transaction | None = None,
) -> None:
    """Give ``amount`` back to the balance, never more than the subscription charged, nor
    (``of``: the charge it refunds) more than is left of that charge."""
    amount = min(amount, net_charged(db, sub.id))
    if of is not None:
        amount = min(amount, of.amount - ledger.given_back(db, of.id))
    amount = amount.quantize(ledger.CENT, rounding=ROUND_DOWN)
    if amount <= 0:
        return
    ledger.post(
        db=db,
        user_id=sub.user_id,
        type_="refund",
        amount=amount,
        currency=sub.currency or site_settings.get(db, CURRENCY),
        subscription_id=sub.id,
        payment_method="balance",
        period_key=key,
        refund_of=of.id if of is not None else None,
        metadata={"kind": reason, "instance_id": str(sub.instance_id)},
    )


def _period_charge(db: Session, sub: Subscription) -> Transaction | None:
    """The charge that paid the current period (the latest of the subscription)."""
    return db.scalar(
        select(Transaction)
        .where(
            Transaction.subscription_id == sub.id,
            Transaction.type == "charge",
            Transaction.status == "completed",
        )
        .order_by(Transaction.created_at.desc(), Transaction.id.desc())
        .limit(1)
        .with_for_update()
    )


def end_for_deletion(*, db: Session, instance_id: uuid.UUID, now: datetime | None = None) -> None:
    """The instance is being deleted: a monthly or yearly subscription refunds its unused whole
    days (setting ``billing.prorated_refunds``); an hourly one is charged up to now, the
    started hour included. The subscription ends ``cancelled``."""
    now = now or utcnow()
    sub = live_for_instance(db=db, instance_id=instance_id)
    if sub is None:
        return
    if sub.status == "active" and sub.type == "hourly":
        _final_hours(db, sub, now)
    elif sub.status == "active" and site_settings.get(db, PRORATED_REFUNDS):
        unused = periods.unused_days_refund(sub.price, sub.period_start, sub.period_end, now)
        key = periods.period_key("refund", sub.period_start)
        refund(db, sub, unused, key, "unused-days", of=_period_charge(db, sub))
    end(sub, "cancelled", now)
    db.flush()


def _final_hours(db: Session, sub: Subscription, now: datetime) -> None:
    """Charge an hourly subscription up to ``now`` (the started hour included) and settle its
    carry. What the balance cannot cover is recorded for staff, never charged: a balance
    never goes below zero."""
    until = periods.ceil_hour(now)
    hourly.bill_until(db=db, now=now, until=until, subscription_ids=[sub.id], final=True)
    db.refresh(sub)
    unpaid = sub.amount_due or Decimal(0)
    if unpaid:
        # Billing stopped at the first unpaid hour; the hours after it are owed too.
        hours = max(int((until - sub.period_start).total_seconds() // 3600), 0)
        rest = (sub.rate or Decimal(0)) * hours
        if sub.monthly_cap is not None:
            rest = min(rest, max(sub.monthly_cap - sub.month_charged, Decimal(0)))
        unpaid += rest.quantize(ledger.CENT, rounding=ROUND_HALF_UP)
    elif sub.accrued > 0:
        # Deleted on the hour: no hour was left to settle the carry with.
        settle = sub.accrued.quantize(ledger.CENT, rounding=ROUND_HALF_UP)
        try:
            with db.begin_nested():
                charge(db, sub, settle, periods.period_key("final", sub.period_start), now)
            sub.accrued = Decimal(0)
        except ledger.InsufficientFundsError:
            unpaid = settle
    if unpaid:
        audit.record(
            db=db,
            action="subscription.unpaid",
            entity_type="subscription",
            entity_id=sub.id,
            new={"amount_due": str(unpaid)},
        )


def end(sub: Subscription, status: str, now: datetime) -> None:
    audit.label(sub, f"subscription.{'expire' if status == 'expired' else 'end'}")
    sub.status = status
    sub.auto_renew = False
    sub.cancelled_at = sub.cancelled_at or now
    sub.amount_due = None
    db = object_session(sub)
    if db is not None:
        announce(db, sub)


def live_instance_ids() -> Select[uuid.UUID | None]:
    """The instances that a live (active or past-due) subscription bills, as a subquery."""
    return select(Subscription.instance_id).where(
        Subscription.status.in_(("active", "past_due")), Subscription.instance_id.is_not(None)
    )


def refund_failed_provisioning(*, db: Session, instance_id: uuid.UUID) -> None:
    """The instance never came up: everything its subscription charged goes back."""
    sub = live_for_instance(db=db, instance_id=instance_id)
    if sub is None:
        return
    now = utcnow()
    refund(db, sub, net_charged(db, sub.id), "provisioning-failed", "provisioning-failed")
    end(sub, "cancelled", now)
    db.flush()


def past_due_count(*, db: Session) -> int:
    """Subscriptions whose renewal is unpaid (in their grace period): the staff overview."""
    return int(db.scalar(select(func.count()).where(Subscription.status == "past_due")) or 0)
