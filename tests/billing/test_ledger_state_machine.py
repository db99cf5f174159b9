"""A Hypothesis state machine over everything that moves money: top-ups, credits, purchases,
hourly runs, renewals, deletions and refunds, in any order, with the clock jumping ahead. After
every step the ledger rule holds, no balance is negative, and no hourly subscription was
charged more than its monthly cap in any calendar month."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories.accounts import make_user
from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from vmcloud.audit import service as audit
from vmcloud.billing import adjustments, dunning, flows, ledger
from vmcloud.billing import run as billing_run
from vmcloud.billing.models import Subscription, Transaction
from vmcloud.billing.payments import refunds as payments
from vmcloud.compute import service as compute
from vmcloud.compute.models import Instance
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.config import Settings
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ProblemError
from vmcloud.db.session import make_engine, make_session_factory, unit_of_work

pytestmark = pytest.mark.slow

AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("30"), places=2)


def _months_over_cap(db: Session, user_id: object) -> list[tuple[object, str, Decimal]]:
    """(subscription, month, charged) for every calendar month an hourly subscription was
    charged more than its cap. Plain per-user queries, aggregated here: the state machine's
    data grows inside one transaction, where the planner has no statistics to join well."""
    caps = dict(
        db.execute(
            select(Subscription.id, Subscription.monthly_cap).where(
                Subscription.user_id == user_id, Subscription.type == "hourly"
            )
        ).all()
    )
    months: dict[tuple[object, str], Decimal] = defaultdict(Decimal)
    for sub_id, hour, amount in db.execute(
        select(
            Transaction.subscription_id,
            Transaction.metadata_json["hour"].astext,
            Transaction.amount,
        ).where(Transaction.user_id == user_id, Transaction.type == "charge")
    ):
        if sub_id in caps and hour:
            months[(sub_id, hour[:7])] += amount
    return [
        (sub_id, month, total)
        for (sub_id, month), total in months.items()
        if caps[sub_id] is not None and total > caps[sub_id]
    ]


@pytest.fixture
def committed(settings: Settings, fresh_database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a database of this test's own whose commits are real: the machine runs
    thousands of billing statements, and inside one long test transaction every row version
    they leave would stay around and slow each next statement down."""
    engine = make_engine(settings.model_copy(update={"database_url": fresh_database_url}))
    yield make_session_factory(engine)
    engine.dispose()


def test_money_moves_keep_the_ledger_rule(
    committed: sessionmaker[Session], app_settings: Settings
) -> None:
    db = committed()
    audit.bind(db, audit.AuditContext())
    admin = make_user(db, role="admin")
    make_node(db, vcpus=512, memory_mb=1024 * 1024, disk_gb=100_000)
    make_pool(db, "198.18.64.0/22")
    plan = make_product(
        db,
        slug="tiny-rate",
        specs_json={"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
        pricing_json={"hourly": "0.0074", "monthly": "4.00", "yearly": "40.00"},
    )
    db.commit()

    batch = partial(unit_of_work, committed)

    class Money(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.user = make_user(db, balance="25.00")
            db.commit()
            self.clock: datetime = utcnow()
            self.instances: list[Instance] = []

        def teardown(self) -> None:
            db.rollback()

        @rule(amount=AMOUNTS)
        def top_up(self, amount: Decimal) -> None:
            ledger.post(
                db=db,
                user_id=self.user.id,
                type_="payment",
                amount=amount,
                currency="USD",
                payment_provider="sandbox",
            )
            dunning.settle_debts(db=db, user_id=self.user.id, now=self.clock)
            db.commit()

        @rule(amount=AMOUNTS)
        def credit(self, amount: Decimal) -> None:
            adjustments.credit(
                db=db, user_id=self.user.id, amount=str(amount), reason="goodwill", admin=admin
            )
            db.commit()

        @rule(cycle=st.sampled_from(["hourly", "monthly", "yearly"]))
        def purchase(self, cycle: str) -> None:
            if len(self.instances) >= 6:
                return
            body = InstanceCreate(
                name="vm", product=plan.slug, region="local", image="tiny-linux",
                billing_cycle=cycle,
            )  # fmt: skip
            try:
                self.instances.append(flows.order_instance(db=db, owner=self.user, body=body))
                db.commit()
            except ledger.InsufficientFundsError:
                db.rollback()

        # An hour, a day, a week, past a month's end (renewals, grace days run out).
        @rule(hours=st.sampled_from([1, 3, 24, 24 * 7, 24 * 32]))
        def time_passes(self, hours: int) -> None:
            # Hourly runs, renewals, suspensions and expiries all happen in the run.
            self.clock += timedelta(hours=hours)
            billing_run.run(unit_of_work=batch, now=self.clock)
            db.expire_all()

        @rule(data=st.data())
        def delete(self, data: st.DataObject) -> None:
            for instance in self.instances:
                db.refresh(instance)
            live = [i for i in self.instances if i.status not in compute.NOT_DELETABLE]
            if not live:
                return
            instance = data.draw(st.sampled_from(live))
            db.refresh(instance, with_for_update=True)
            if instance.status not in compute.NOT_DELETABLE:
                flows.delete_instance(db=db, instance=instance)
            db.commit()

        @rule(data=st.data())
        def refund_a_charge(self, data: st.DataObject) -> None:
            charges = db.query(Transaction).filter_by(user_id=self.user.id, type="charge").all()
            if not charges:
                return
            charge = data.draw(st.sampled_from(charges))
            amount = data.draw(st.decimals(min_value=Decimal("0.01"), max_value=charge.amount))
            try:
                payments.refund_transaction(
                    db=db,
                    admin=admin,
                    transaction_id=charge.id,
                    amount=str(amount.quantize(Decimal("0.01"))),
                    reason="goodwill",
                    settings=app_settings,
                )
                db.commit()
            except ProblemError:
                db.rollback()  # more than is left to refund: refused, nothing changed

        @invariant()
        def ledger_rule_holds(self) -> None:
            assert ledger.verify(db=db, user_id=self.user.id) == []
            db.refresh(self.user)
            assert self.user.balance is not None and self.user.balance >= 0

        @invariant()
        def hourly_months_stay_under_the_cap(self) -> None:
            assert _months_over_cap(db, self.user.id) == []

    try:
        run_state_machine_as_test(
            Money,
            settings=settings(
                max_examples=12,
                stateful_step_count=15,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        db.close()
