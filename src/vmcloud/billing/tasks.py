"""Billing jobs: the billing run, the ledger check, past-due emails, key purging."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from prometheus_client import Gauge
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.billing import emails, verification
from vmcloud.billing.models import Subscription
from vmcloud.billing.run import run as run_billing
from vmcloud.compute import service as compute
from vmcloud.core import jobs
from vmcloud.core.clock import utcnow
from vmcloud.core.logging import get_logger
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CURRENCY, GRACE_DAYS, LOW_BALANCE_WARNING, SITE_NAME

log = get_logger(__name__)

LEDGER_MISMATCHES = Gauge(
    "vmcloud_ledger_mismatches",
    "Users whose balance differs from their ledger at the last check (should be 0).",
)
LEDGER_CHECKED = Gauge(
    "vmcloud_ledger_last_check_timestamp_seconds", "When the ledger was last checked."
)


@contextmanager
def _batch() -> Iterator[Session]:
    with jobs.unit_of_work() as (db, _):
        yield db


# Idempotent: every charge is keyed by its period, so a rerun bills nothing twice.
@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.periodic(cron="* * * * *", periodic_id="billing-run")
@jobs.app.task(name="billing.run", queue="billing", lock="billing-run")
def billing_run(timestamp: int) -> None:
    # The lock keeps runs from piling up; two at once would still bill nothing twice.
    run_billing(unit_of_work=_batch, now=utcnow())


def _check_ledger(*, full: bool) -> None:
    with jobs.unit_of_work() as (db, _):
        result = verification.check(db=db, full=full)
    LEDGER_MISMATCHES.set(len(result.mismatches))
    LEDGER_CHECKED.set(utcnow().timestamp())
    log.info(
        "ledger.checked",
        kind=result.kind,
        users=result.users_checked,
        entries=result.entries_read,
        horizon=result.horizon.isoformat(),
        mismatches=len(result.mismatches),
    )
    for m in result.mismatches:
        log.error(
            "ledger.mismatch", user_id=str(m.user_id), balance=str(m.balance), ledger=str(m.ledger)
        )


# Changes only the checkpoint, which a rerun moves on again.
@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.periodic(cron="*/10 * * * *", periodic_id="ledger-verify")
@jobs.app.task(name="billing.verify_ledger", queue="maintenance")
def verify_ledger(timestamp: int) -> None:
    """Every balance against its checkpoint and the entries processed since the last check."""
    _check_ledger(full=False)


@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.periodic(cron="30 3 * * 0", periodic_id="ledger-verify-full")
@jobs.app.task(name="billing.verify_ledger_full", queue="maintenance")
def verify_ledger_full(timestamp: int) -> None:
    """Every balance against the whole ledger, weekly: an old entry changed since it was
    summed shows only here."""
    _check_ledger(full=True)


@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.task(name="billing.send_past_due_email", queue="mail", retry=jobs.DEFAULT_RETRY)
def send_past_due_email(subscription_id: str) -> None:
    with jobs.unit_of_work() as (db, runtime):
        sub = db.get(Subscription, uuid.UUID(subscription_id))
        if sub is None or sub.status != "past_due":
            return
        user = db.get(User, sub.user_id)
        instance = (
            compute.get_instance(db=db, instance_id=sub.instance_id) if sub.instance_id else None
        )
        if user is None:
            return
        runtime.mailer.send(
            emails.past_due(
                to=user.email,
                site=site_settings.get(db, SITE_NAME),
                instance=instance.name if instance else "your instance",
                amount=sub.amount_due or Decimal(0),
                currency=sub.currency or "USD",
                grace_days=site_settings.get(db, GRACE_DAYS),
                link=runtime.settings.public_url,
            )
        )


@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.task(name="billing.send_low_balance_email", queue="mail", retry=jobs.DEFAULT_RETRY)
def send_low_balance_email(user_id: str) -> None:
    with jobs.unit_of_work() as (db, runtime):
        user = db.get(User, uuid.UUID(user_id))
        warn_below = site_settings.get(db, LOW_BALANCE_WARNING)
        if user is None or (user.balance or Decimal(0)) >= warn_below:
            return  # topped up meanwhile
        runtime.mailer.send(
            emails.low_balance(
                to=user.email,
                site=site_settings.get(db, SITE_NAME),
                balance=user.balance or Decimal(0),
                currency=site_settings.get(db, CURRENCY),
                link=runtime.settings.public_url,
            )
        )
