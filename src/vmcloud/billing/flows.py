"""What a customer buys, as one unit of work across compute and billing: ordering an instance
(the VM and its subscription) and deleting one (the VM and the end of its billing). Routes and
the billing run call these; compute knows nothing of billing. Everything happens in the
caller's transaction, so a 402 leaves no instance behind and a delete never ends billing
without queuing the VM's destruction."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.billing import dunning, ledger, periods, subscriptions
from vmcloud.billing.models import Subscription
from vmcloud.catalog import service as catalog
from vmcloud.compute import service as compute
from vmcloud.compute.models import Instance
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.core.clock import utcnow
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import PRORATED_REFUNDS


def order_instance(*, db: Session, owner: User, body: InstanceCreate) -> Instance:
    """Reserve and queue the VM, then start its subscription (monthly and yearly are charged
    now: 402 and nothing written when the balance does not cover it)."""
    instance = compute.create_instance(db=db, owner=owner, body=body)
    product = catalog.get_product_by_id(db=db, product_id=instance.product_id)
    assert product is not None  # create_instance found it on sale a moment ago
    subscriptions.start(
        db=db,
        user_id=owner.id,
        instance_id=instance.id,
        pricing=product.pricing_json,
        cycle=body.billing_cycle,
    )
    return instance


def delete_instance(*, db: Session, instance: Instance, reason: str | None = None) -> Instance:
    """End the instance's billing now and queue the VM's destruction. An instance that never
    came up gets back everything it was charged (the billing run's sweep would do the same a
    minute later); any other has its unused whole days refunded, or its hours charged up to
    now."""
    compute.check_deletable(instance)
    if compute.failed_before_start(instance):
        subscriptions.refund_failed_provisioning(db=db, instance_id=instance.id)
    else:
        subscriptions.end_for_deletion(db=db, instance_id=instance.id)
    deleted = compute.delete_instance(db=db, instance=instance, reason=reason)
    dunning.settle_debts(db=db, user_id=instance.user_id)  # a refund pays what is due
    return deleted


def deletion_refund(*, db: Session, instance: Instance, now: datetime | None = None) -> Decimal:
    """What :func:`delete_instance` would give back if the instance were deleted ``now`` (a
    read for the confirmation page): everything, for one that never came up; the unused whole
    days of a paid monthly or yearly period; nothing for hourly billing."""
    sub = subscriptions.live_for_instance(db=db, instance_id=instance.id, lock=False)
    if sub is None:
        return Decimal("0.00")
    charged = subscriptions.net_charged(db, sub.id)
    refunds_days = site_settings.get(db, PRORATED_REFUNDS)
    if compute.failed_before_start(instance):
        amount = charged
    elif sub.status != "active" or sub.type == "hourly" or not refunds_days:
        return Decimal("0.00")
    else:
        unused = periods.unused_days_refund(
            sub.price, sub.period_start, sub.period_end, now or utcnow()
        )
        amount = min(unused, charged)
    return max(amount, Decimal(0)).quantize(ledger.CENT, rounding=ROUND_DOWN)


def cancel_subscription(*, db: Session, sub: Subscription) -> Subscription:
    """Stop renewal at the period's end; a past-due subscription ends now and its instance is
    deleted (its debt written off)."""
    was_past_due = sub.status == "past_due"
    subscriptions.cancel(db=db, sub=sub)
    if was_past_due:
        end_instance(db, sub, "cancelled")
    return sub


def end_instance(db: Session, sub: Subscription, reason: str) -> None:
    """Delete the instance of a subscription that ended (skipped if a request holds the
    instance right now: ``endings.enforce_endings`` catches it on the next run)."""
    if sub.instance_id is None:
        return
    instance = compute.get_instance(db=db, instance_id=sub.instance_id, lock=True, skip_locked=True)
    if instance is not None and instance.status not in compute.NOT_DELETABLE:
        delete_instance(db=db, instance=instance, reason=reason)


def refund_failed_provisionings(*, db: Session, limit: int = 500) -> int:
    """The billing run's sweep: live subscriptions whose instance ended in ``error`` without
    ever starting are refunded in full and cancelled. Returns how many."""
    failed = compute.never_started_failures(
        db=db, among=subscriptions.live_instance_ids(), limit=limit
    )
    for instance_id in failed:
        sub = subscriptions.live_for_instance(db=db, instance_id=instance_id)
        subscriptions.refund_failed_provisioning(db=db, instance_id=instance_id)
        if sub is not None:
            dunning.settle_debts(db=db, user_id=sub.user_id)
    return len(failed)
