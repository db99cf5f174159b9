"""The billing run, every minute: refund failed provisionings, bill finished hours, renew or
end the periods that are over, and end what stayed unpaid past the grace days. Each step works
in batches, each batch in a transaction of its own, so a large run holds no lock for long and a
crash loses nothing; every step only picks what is still due, so re-running it bills nothing
twice."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.billing import alerts, dunning, endings, flows, hourly
from vmcloud.billing.models import Subscription
from vmcloud.billing.renewals import renew_due
from vmcloud.core.logging import get_logger

log = get_logger(__name__)

# Opens one batch's unit of work (``db.session.unit_of_work`` on some session factory).
UnitOfWork = Callable[[], AbstractContextManager[Session]]


@dataclass
class RunSummary:
    hourly: hourly.RunResult
    renewed: int = 0
    unpaid: int = 0
    ended: int = 0
    expired: int = 0
    enforced: int = 0
    refunded: int = 0  # failed provisionings given back (flows.refund_failed_provisionings)


def run(*, unit_of_work: UnitOfWork, now: datetime, batch: int = hourly.BATCH) -> RunSummary:
    """One billing run at ``now``; each batch commits on its own."""
    summary = RunSummary(hourly=hourly.RunResult())
    while True:
        # First: an instance that never came up is refunded, not billed on.
        with unit_of_work() as db:
            refunded = flows.refund_failed_provisionings(db=db)
        summary.refunded += refunded
        if refunded == 0:
            break
    while True:
        with unit_of_work() as db:
            step = hourly.bill_batch(db=db, now=now, batch=batch)
            if step.past_due:
                dunning.mark_past_due(db=db, subscription_ids=step.past_due)
            alerts.warn(db, step.low_balance)
            for sub in db.scalars(select(Subscription).where(Subscription.id.in_(step.ended))):
                flows.end_instance(db, sub, "cancelled")
        summary.hourly.add(step)
        if step.hours == 0:
            break
    while True:
        with unit_of_work() as db:
            renewed, unpaid, ended = renew_due(db=db, now=now)
        summary.renewed += renewed
        summary.unpaid += unpaid
        summary.ended += ended
        if renewed + unpaid + ended == 0:
            break
    while True:
        with unit_of_work() as db:
            expired = endings.expire_overdue(db=db, now=now)
        summary.expired += expired
        if expired == 0:
            break
    with unit_of_work() as db:
        # Catch what a batch had to skip (an instance busy in a request, or still
        # provisioning when its subscription fell due).
        summary.enforced = dunning.enforce_suspensions(db=db) + endings.enforce_endings(db=db)
    log.info(
        "billing.run",
        enforced=summary.enforced,
        hours=summary.hourly.hours,
        charges=summary.hourly.charges,
        amount=str(summary.hourly.amount),
        renewed=summary.renewed,
        unpaid=summary.unpaid + len(summary.hourly.past_due),
        ended=summary.ended + len(summary.hourly.ended),
        expired=summary.expired,
        refunded=summary.refunded,
    )
    return summary
