"""The billing run's last word: subscriptions unpaid past the grace days end, and instances
whose subscription ended (cancelled at period end, or expired) are deleted."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.billing import flows
from vmcloud.billing.models import Subscription
from vmcloud.billing.subscriptions import end
from vmcloud.compute import service as compute
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import GRACE_DAYS


def expire_overdue(*, db: Session, now: datetime, batch: int = 200) -> int:
    """End subscriptions unpaid for longer than the grace days and delete their instances."""
    grace = site_settings.get(db, GRACE_DAYS)
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
        end(sub, "expired", now)
        db.flush()
        flows.end_instance(db, sub, "unpaid")
    return len(subs)


def enforce_endings(*, db: Session) -> int:
    """Delete live instances whose subscription ended (cancelled at period end, or expired)
    and that no live subscription keeps. Instances in ``error`` (a failed provisioning ends
    its subscription too) are left for their owner to delete."""
    ended = select(Subscription.instance_id).where(
        Subscription.status.in_(("cancelled", "expired"))
    )
    live = select(Subscription.instance_id).where(Subscription.status.in_(("active", "past_due")))
    instance_ids = compute.live_instances_among(
        db=db,
        among=ended.except_(live),
        except_statuses=(*compute.NOT_DELETABLE, "error"),
        limit=500,
    )
    done = 0
    for instance_id in instance_ids:
        instance = compute.get_instance(db=db, instance_id=instance_id, lock=True, skip_locked=True)
        if instance is not None and instance.status not in (*compute.NOT_DELETABLE, "error"):
            flows.delete_instance(db=db, instance=instance, reason="subscription ended")
            done += 1
    return done
