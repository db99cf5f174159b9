"""Subscriptions: charged up front or by the hour, renewed, suspended, resumed and ended, with a
controllable clock (every run is given its ``now``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tests.billing.conftest import Buy, Run
from tests.factories.accounts import fund, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import make_node
from tests.helpers import JobRunner, Mailbox
from vmcloud.audit.models import AuditLog
from vmcloud.billing import dunning, flows, ledger, periods, subscriptions
from vmcloud.billing.models import Subscription, Transaction
from vmcloud.catalog.models import Product
from vmcloud.compute import service as compute
from vmcloud.compute.models import Instance, Node
from vmcloud.core.clock import utcnow
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import GRACE_DAYS

DECEMBER = datetime(2026, 12, 1)
JANUARY = datetime(2027, 1, 1)


def _sub(db: Session, instance: Instance) -> Subscription:
    sub = db.scalar(select(Subscription).where(Subscription.instance_id == instance.id))
    assert sub is not None
    db.refresh(sub)
    return sub


def _charged(db: Session, sub: Subscription) -> Decimal:
    return db.scalar(
        select(func.coalesce(func.sum(Transaction.amount), 0)).where(
            Transaction.subscription_id == sub.id, Transaction.type == "charge"
        )
    ) or Decimal(0)


def _balance(db: Session, user_id: object) -> Decimal:
    return Decimal(db.scalar(text("SELECT balance FROM users WHERE id = :id"), {"id": user_id}))


def _assert_ledger(db: Session) -> None:
    db.flush()
    assert ledger.verify(db=db) == []


def _start_at(db: Session, sub: Subscription, start: datetime) -> None:
    """Move an hourly subscription's first hour to ``start`` (the clock of the test)."""
    sub.period_start, sub.period_end = start, start + timedelta(hours=1)
    db.flush()


def _hourly_plan(db: Session, rate: str, monthly: str) -> Product:
    return make_product(
        db,
        slug=f"rate-{rate.replace('.', '-')}-{monthly.replace('.', '-')}",
        specs_json={"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
        pricing_json={"hourly": rate, "monthly": monthly},
    )


# -- up front -------------------------------------------------------------------------------


def test_monthly_is_charged_up_front(db: Session, buy: Buy) -> None:
    user = make_user(db, balance="10.00")
    sub = _sub(db, buy(user, "monthly"))
    assert (sub.type, sub.status, sub.price, sub.auto_renew) == ("monthly", "active", 4, True)
    assert sub.period_end == periods.add_months(sub.period_start, 1)
    assert _balance(db, user.id) == Decimal("6.00")
    assert _charged(db, sub) == Decimal("4.00")
    _assert_ledger(db)


def test_yearly_is_charged_a_year_up_front(db: Session, buy: Buy) -> None:
    user = make_user(db, balance="50.00")
    sub = _sub(db, buy(user, "yearly"))
    assert sub.period_end == periods.add_months(sub.period_start, 12)
    assert _balance(db, user.id) == Decimal("10.00")


def test_a_purchase_the_balance_does_not_cover_creates_nothing(
    db: Session, buy: Buy, node: Node
) -> None:
    user = make_user(db, balance="3.99")
    with pytest.raises(ledger.InsufficientFundsError), db.begin_nested():
        buy(user, "monthly")
    db.refresh(node)
    assert node.allocated_vcpus == 0
    assert db.scalar(select(func.count()).select_from(Instance)) == 0
    assert db.scalar(select(func.count()).select_from(Subscription)) == 0
    assert _balance(db, user.id) == Decimal("3.99")


def test_hourly_needs_the_minimum_balance_and_is_not_charged_up_front(
    db: Session, buy: Buy
) -> None:
    poor = make_user(db, balance="4.99")
    with pytest.raises(ledger.InsufficientFundsError), db.begin_nested():
        buy(poor, "hourly")
    user = make_user(db, balance="5.00")
    sub = _sub(db, buy(user, "hourly"))
    assert (sub.rate, sub.monthly_cap, sub.period_end - sub.period_start) == (
        Decimal("0.0074"),
        Decimal("4.00"),
        timedelta(hours=1),
    )
    assert _balance(db, user.id) == Decimal("5.00")


# -- hourly accrual --------------------------------------------------------------------------


def test_a_sub_cent_rate_accrues_exactly_and_rounds_once_a_month(
    db: Session, buy: Buy, billing_run: Run
) -> None:
    plan = _hourly_plan(db, "0.0074", "10.00")
    user = make_user(db, balance="20.00")
    sub = _sub(db, buy(user, "hourly", product=plan.slug))
    _start_at(db, sub, DECEMBER)

    billing_run(DECEMBER + timedelta(hours=10, minutes=5))
    db.refresh(sub)
    # 10 hours = 0.074: seven cents charged, the fraction carried, nothing rounded away.
    assert _charged(db, sub) == Decimal("0.07")
    assert sub.accrued == Decimal("0.004")
    assert _charged(db, sub) + sub.accrued == 10 * Decimal("0.0074")
    assert sub.period_start == DECEMBER + timedelta(hours=10)

    billing_run(JANUARY)
    db.refresh(sub)
    hours = 31 * 24
    exact = hours * Decimal("0.0074")  # 5.5056
    assert _charged(db, sub) == exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert sub.accrued == 0  # settled at the month's last hour
    assert _balance(db, user.id) == Decimal("20.00") - Decimal("5.51")
    _assert_ledger(db)


def test_hourly_charges_in_a_month_never_exceed_the_monthly_price(
    db: Session, buy: Buy, billing_run: Run
) -> None:
    user = make_user(db, balance="20.00")
    sub = _sub(db, buy(user, "hourly"))  # 0.0074/hour, 4.00 a month
    _start_at(db, sub, DECEMBER)
    billing_run(JANUARY)
    assert _charged(db, sub) == Decimal("4.00")
    db.refresh(sub)
    assert sub.month_charged == Decimal("4.00")
    # A new month starts a new total.
    billing_run(JANUARY + timedelta(hours=24))
    assert _charged(db, sub) == Decimal("4.00") + Decimal("0.17")  # 24 x 0.0074 = 0.1776
    _assert_ledger(db)


def test_a_billing_hour_run_again_charges_nothing(db: Session, buy: Buy, billing_run: Run) -> None:
    plan = _hourly_plan(db, "0.25", "100.00")
    user = make_user(db, balance="50.00")
    sub = _sub(db, buy(user, "hourly", product=plan.slug))
    _start_at(db, sub, DECEMBER)
    first = billing_run(DECEMBER + timedelta(hours=3))
    assert (first.hourly.hours, first.hourly.charges) == (3, 3)
    entries = db.scalar(select(func.count()).select_from(Transaction))
    for again in (DECEMBER + timedelta(hours=3), DECEMBER + timedelta(hours=3, minutes=59)):
        rerun = billing_run(again)
        assert (rerun.hourly.hours, rerun.hourly.charges) == (0, 0)
    assert db.scalar(select(func.count()).select_from(Transaction)) == entries
    assert _balance(db, user.id) == Decimal("49.25")


def test_the_period_key_refuses_a_second_charge_for_the_same_hour(
    db: Session, buy: Buy, billing_run: Run
) -> None:
    plan = _hourly_plan(db, "0.25", "100.00")
    user = make_user(db, balance="50.00")
    sub = _sub(db, buy(user, "hourly", product=plan.slug))
    _start_at(db, sub, DECEMBER)
    billing_run(DECEMBER + timedelta(hours=1))
    # Even if the period were wound back (a bug, a restore), the hour cannot be billed again.
    _start_at(db, sub, DECEMBER)
    with pytest.raises(Exception, match="uq_transactions_subscription_period"):
        billing_run(DECEMBER + timedelta(hours=1))


# -- renewals, suspension, grace ---------------------------------------------------------


def test_a_monthly_subscription_renews_at_period_end(
    db: Session, buy: Buy, billing_run: Run
) -> None:
    user = make_user(db, balance="10.00")
    sub = _sub(db, buy(user, "monthly"))
    end = sub.period_end
    billing_run(end - timedelta(minutes=1))
    assert _charged(db, sub) == Decimal("4.00")
    billing_run(end)
    db.refresh(sub)
    assert _charged(db, sub) == Decimal("8.00")
    assert (sub.period_start, sub.period_end) == (end, periods.add_months(end, 1))
    assert _balance(db, user.id) == Decimal("2.00")
    _assert_ledger(db)


def test_unpaid_renewal_suspends_and_a_top_up_resumes(
    db: Session, buy: Buy, billing_run: Run, job_runner: JobRunner
) -> None:
    user = make_user(db, balance="4.00")
    instance = buy(user, "monthly")
    compute.set_status(instance, "running")
    sub = _sub(db, instance)
    end = sub.period_end
    billing_run(end)
    db.refresh(sub)
    db.refresh(instance)
    assert (sub.status, sub.amount_due, sub.past_due_since) == ("past_due", Decimal("4.00"), end)
    assert instance.status == "suspended"
    assert [j[1] for j in job_runner.pending("billing.")] == ["billing.send_past_due_email"]
    # The customer cannot start it.
    with pytest.raises(Exception, match="suspended"):
        compute.request_action(db=db, instance=instance, action="start")

    later = end + timedelta(days=2)
    fund(db, user, "3.00")
    dunning.settle_debts(db=db, user_id=user.id, now=later)
    db.refresh(sub)
    assert sub.status == "past_due"  # 3.00 does not cover 4.00
    fund(db, user, "1.50")
    dunning.settle_debts(db=db, user_id=user.id, now=later)
    db.refresh(sub)
    db.refresh(instance)
    assert (sub.status, sub.amount_due, sub.past_due_since) == ("active", None, None)
    assert (sub.period_start, sub.period_end) == (later, periods.add_months(later, 1))
    assert instance.status == "starting"
    assert _balance(db, user.id) == Decimal("0.50")
    _assert_ledger(db)


def test_unpaid_past_the_grace_days_deletes_the_instance(
    db: Session, buy: Buy, billing_run: Run
) -> None:
    user = make_user(db, balance="4.00")
    instance = buy(user, "monthly")
    compute.set_status(instance, "running")
    sub = _sub(db, instance)
    end = sub.period_end
    billing_run(end)
    grace = site_settings.get(db, GRACE_DAYS)
    billing_run(end + timedelta(days=grace) - timedelta(seconds=1))
    db.refresh(sub)
    assert sub.status == "past_due"
    billing_run(end + timedelta(days=grace))
    db.refresh(sub)
    db.refresh(instance)
    assert sub.status == "expired"
    assert instance.status == "deleting"
    assert _balance(db, user.id) == 0
    _assert_ledger(db)


def test_hourly_without_funds_goes_past_due(db: Session, buy: Buy, billing_run: Run) -> None:
    plan = _hourly_plan(db, "2.50", "100.00")
    user = make_user(db, balance="5.00")
    instance = buy(user, "hourly", product=plan.slug)
    compute.set_status(instance, "running")
    sub = _sub(db, instance)
    _start_at(db, sub, DECEMBER)
    billing_run(DECEMBER + timedelta(hours=3))
    db.refresh(sub)
    db.refresh(instance)
    assert _charged(db, sub) == Decimal("5.00")
    assert (sub.status, sub.amount_due) == ("past_due", Decimal("2.50"))
    assert instance.status == "suspended"
    assert _balance(db, user.id) == 0
    actions = db.scalars(
        select(AuditLog.action).where(AuditLog.entity_id.in_([sub.id, instance.id]))
    ).all()
    assert "subscription.past_due" in actions and "instance.suspend" in actions
    # Suspended hours are not billed.
    billing_run(DECEMBER + timedelta(hours=20))
    assert _charged(db, sub) == Decimal("5.00")
    _assert_ledger(db)


def test_a_cancelled_subscription_ends_its_instance_at_period_end(
    db: Session, buy: Buy, billing_run: Run
) -> None:
    user = make_user(db, balance="10.00")
    instance = buy(user, "monthly")
    sub = _sub(db, instance)
    flows.cancel_subscription(db=db, sub=sub)
    with pytest.raises(Exception, match="already cancelled"):
        flows.cancel_subscription(db=db, sub=sub)
    billing_run(sub.period_end - timedelta(seconds=1))
    db.refresh(instance)
    assert instance.status == "pending"
    billing_run(sub.period_end)
    db.refresh(sub)
    db.refresh(instance)
    assert (sub.status, instance.status) == ("cancelled", "deleting")
    assert _charged(db, sub) == Decimal("4.00")  # not renewed
    _assert_ledger(db)


def test_a_cancelled_hourly_subscription_ends_with_its_hour(
    db: Session, buy: Buy, billing_run: Run
) -> None:
    user = make_user(db, balance="10.00")
    instance = buy(user, "hourly")
    sub = _sub(db, instance)
    _start_at(db, sub, DECEMBER)
    flows.cancel_subscription(db=db, sub=sub)
    billing_run(DECEMBER + timedelta(hours=1))
    db.refresh(sub)
    db.refresh(instance)
    assert (sub.status, instance.status) == ("cancelled", "deleting")
    assert _charged(db, sub) == Decimal("0.01")  # one hour of 0.0074, settled once


# -- ending -----------------------------------------------------------------------------------


def test_deleting_a_monthly_instance_refunds_its_unused_whole_days(db: Session, buy: Buy) -> None:
    user = make_user(db, balance="4.00")
    instance = buy(user, "monthly")
    sub = _sub(db, instance)
    # Used for ten days and a bit.
    sub.period_start -= timedelta(days=10, hours=3)
    sub.period_end -= timedelta(days=10, hours=3)
    db.flush()
    flows.delete_instance(db=db, instance=instance)
    db.refresh(sub)
    total = (sub.period_end - sub.period_start).days
    unused = total - 11  # the started eleventh day is not refunded
    expected = (Decimal("4.00") * unused / total).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    assert _balance(db, user.id) == expected
    assert sub.status == "cancelled"
    _assert_ledger(db)


def test_no_refund_when_prorated_refunds_are_off(db: Session, buy: Buy) -> None:
    site_settings.update_setting(db=db, key="billing.prorated_refunds", value=False)
    user = make_user(db, balance="4.00")
    instance = buy(user, "monthly")
    flows.delete_instance(db=db, instance=instance)
    assert _balance(db, user.id) == 0


def test_deleting_an_hourly_instance_charges_up_to_now(db: Session, buy: Buy) -> None:
    plan = _hourly_plan(db, "0.30", "100.00")
    user = make_user(db, balance="10.00")
    instance = buy(user, "hourly", product=plan.slug)
    sub = _sub(db, instance)
    # Three whole hours unbilled, and the hour now running.
    _start_at(db, sub, sub.period_start - timedelta(hours=3))
    flows.delete_instance(db=db, instance=instance)
    db.refresh(sub)
    assert _charged(db, sub) == Decimal("1.20")
    assert sub.status == "cancelled"
    assert _balance(db, user.id) == Decimal("8.80")
    _assert_ledger(db)


def test_a_failed_provisioning_is_refunded_by_the_next_billing_run(
    db: Session, buy: Buy, job_runner: JobRunner, billing_run: Run
) -> None:
    broken = make_node(
        db, variant="fails-on-create", vcpus=512, memory_mb=1024 * 1024, disk_gb=100_000
    )
    db.execute(text("UPDATE nodes SET status = 'disabled' WHERE id <> :id"), {"id": broken.id})
    user = make_user(db, balance="4.00")
    instance = buy(user, "monthly")
    assert _balance(db, user.id) == 0
    job_runner.attempts = 4  # the last attempt
    job_runner.run("compute.")
    db.refresh(instance)
    assert instance.status == "error"
    # Compute knows nothing of billing: the refund is pulled by the billing run's sweep.
    assert _sub(db, instance).status == "active"
    billing_run(utcnow())
    sub = _sub(db, instance)
    assert sub.status == "cancelled"
    assert _balance(db, user.id) == Decimal("4.00")
    billing_run(utcnow())  # once
    assert _balance(db, user.id) == Decimal("4.00")
    _assert_ledger(db)


def test_deleting_a_failed_instance_before_the_sweep_refunds_it_all(
    db: Session, buy: Buy, job_runner: JobRunner
) -> None:
    broken = make_node(
        db, variant="fails-on-create", vcpus=512, memory_mb=1024 * 1024, disk_gb=100_000
    )
    db.execute(text("UPDATE nodes SET status = 'disabled' WHERE id <> :id"), {"id": broken.id})
    user = make_user(db, balance="4.00")
    instance = buy(user, "monthly")
    job_runner.attempts = 4
    job_runner.run("compute.")
    db.refresh(instance)
    flows.delete_instance(db=db, instance=instance)
    assert _sub(db, instance).status == "cancelled"
    assert _balance(db, user.id) == Decimal("4.00")  # not just the unused days
    _assert_ledger(db)


# -- regressions from review -------------------------------------------------------------------


def test_an_hour_unpaid_at_a_months_end_does_not_eat_next_months_cap(
    db: Session, buy: Buy, billing_run: Run
) -> None:
    plan = _hourly_plan(db, "2.00", "10.00")
    user = make_user(db, balance="6.00")
    sub = _sub(db, buy(user, "hourly", product=plan.slug))
    _start_at(db, sub, datetime(2027, 1, 31, 20))
    billing_run(datetime(2027, 2, 1, 0, 1))
    db.refresh(sub)
    assert (sub.status, sub.month_charged) == ("past_due", Decimal("8.00"))
    fund(db, user, "100.00")
    dunning.settle_debts(db=db, user_id=user.id, now=datetime(2027, 2, 3, 12, 30))
    billing_run(datetime(2027, 2, 3, 22, 0))
    february = db.scalar(
        select(func.sum(Transaction.amount)).where(
            Transaction.subscription_id == sub.id,
            Transaction.period_key.like("hour:2027-02-%"),
        )
    )
    assert february == Decimal("10.00")  # ten hours of 2.00, capped at the monthly 10.00
    _assert_ledger(db)


def test_an_instance_still_provisioning_when_it_falls_due_is_suspended_later(
    db: Session, buy: Buy, billing_run: Run
) -> None:
    plan = _hourly_plan(db, "6.00", "100.00")
    user = make_user(db, balance="5.00")
    instance = buy(user, "hourly", product=plan.slug)
    sub = _sub(db, instance)
    _start_at(db, sub, DECEMBER)
    billing_run(DECEMBER + timedelta(hours=1))
    db.refresh(sub)
    db.refresh(instance)
    assert (sub.status, instance.status) == ("past_due", "pending")
    compute.set_status(instance, "running")  # provisioning finished after all
    db.flush()
    billing_run(DECEMBER + timedelta(hours=1, minutes=1))
    db.refresh(instance)
    assert instance.status == "suspended"


def test_cancelling_a_past_due_subscription_ends_it_now(
    db: Session, buy: Buy, billing_run: Run
) -> None:
    user = make_user(db, balance="4.00")
    instance = buy(user, "monthly")
    compute.set_status(instance, "running")
    sub = _sub(db, instance)
    billing_run(sub.period_end)
    db.refresh(sub)
    assert sub.status == "past_due"
    flows.cancel_subscription(db=db, sub=sub)
    db.refresh(instance)
    assert (sub.status, sub.amount_due, instance.status) == ("cancelled", None, "deleting")
    fund(db, user, "50.00")
    dunning.settle_debts(db=db, user_id=user.id, now=sub.period_end)
    assert _balance(db, user.id) == Decimal("50.00")  # nothing collected after cancelling
    _assert_ledger(db)


def test_the_unused_days_refund_counts_against_its_periods_charge(db: Session, buy: Buy) -> None:
    from vmcloud.billing.payments.refunds import refundable

    user = make_user(db, balance="4.00")
    instance = buy(user, "monthly")
    sub = _sub(db, instance)
    charge = db.scalar(select(Transaction).where(Transaction.subscription_id == sub.id))
    assert charge is not None
    flows.delete_instance(db=db, instance=instance)
    refunded = _balance(db, user.id)
    assert refunded > Decimal("3.50")
    assert refundable(db, charge) == Decimal("4.00") - refunded
    _assert_ledger(db)


def test_deleted_on_the_hour_the_carry_is_still_settled(db: Session, buy: Buy) -> None:
    user = make_user(db, balance="10.00")
    instance = buy(user, "hourly")  # 0.0074/hour
    sub = _sub(db, instance)
    _start_at(db, sub, DECEMBER)
    subscriptions.end_for_deletion(
        db=db, instance_id=instance.id, now=DECEMBER + timedelta(hours=5)
    )
    # Five hours: 0.037, charged 0.03 along the way and the 0.007 carry rounded once.
    assert _charged(db, sub) == Decimal("0.04")
    _assert_ledger(db)


def test_unpaid_last_hours_are_recorded_in_full(db: Session, buy: Buy) -> None:
    plan = _hourly_plan(db, "1.00", "100.00")
    user = make_user(db, balance="5.00")
    instance = buy(user, "hourly", product=plan.slug)
    sub = _sub(db, instance)
    _start_at(db, sub, DECEMBER)
    # Nine hours unbilled (the run was behind); the balance covers five.
    subscriptions.end_for_deletion(
        db=db, instance_id=instance.id, now=DECEMBER + timedelta(hours=8, minutes=30)
    )
    assert _charged(db, sub) == Decimal("5.00")
    recorded = db.scalar(
        select(AuditLog.new_values).where(
            AuditLog.action == "subscription.unpaid", AuditLog.entity_id == sub.id
        )
    )
    assert recorded == {"amount_due": "4.00"}
    _assert_ledger(db)


# -- low-balance warnings ------------------------------------------------------------------


def _warnings(job_runner: JobRunner) -> int:
    return len(job_runner.pending("billing.send_low_balance_email"))


def test_a_charge_that_crosses_the_warning_line_warns_once(
    db: Session, buy: Buy, billing_run: Run, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    # The warning line is 5.00 (seeded). An hourly plan of 1.00: 7.00 → 6.00 → 5.00 → 4.00.
    plan = _hourly_plan(db, "1.00", "100.00")
    user = make_user(db, balance="7.00")
    sub = _sub(db, buy(user, "hourly", product=plan.slug))
    _start_at(db, sub, DECEMBER)
    billing_run(DECEMBER + timedelta(hours=2))
    assert _warnings(job_runner) == 0  # 5.00 is not below the line
    billing_run(DECEMBER + timedelta(hours=3))
    assert _warnings(job_runner) == 1  # 4.00 crossed it
    billing_run(DECEMBER + timedelta(hours=4))
    assert _warnings(job_runner) == 1  # already below: no second warning
    job_runner.run("billing.send_low_balance_email")
    [warning] = mailbox.to(user.email)
    assert "3.00 USD" in warning.get_content()


def test_an_up_front_charge_warns_and_a_top_up_meanwhile_cancels_the_mail(
    db: Session, buy: Buy, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    user = make_user(db, balance="8.00")
    buy(user, "monthly")  # 8.00 → 4.00
    assert _warnings(job_runner) == 1
    fund(db, user, "10.00")
    job_runner.run("billing.send_low_balance_email")
    assert mailbox.to(user.email) == []
