"""A Hypothesis state machine over everything that moves money: top-ups, credits, purchases,
hourly runs, renewals, deletions and refunds, in any order, with the clock jumping ahead. After
every step the ledger rule holds, no balance is negative, and no hourly subscription was
charged more than its monthly cap in any calendar month."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.billing.conftest import Buy, Run
from tests.factories.accounts import make_user
from vmcloud.billing import ledger, subscriptions
from vmcloud.billing import service as billing
from vmcloud.billing.models import Transaction
from vmcloud.billing.payments import refunds as payments
from vmcloud.compute import service as compute
from vmcloud.compute.models import Instance
from vmcloud.config import Settings
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ProblemError

AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("30"), places=2)

_CAPS = text(
    """
    SELECT s.id, date_trunc('month', CAST(t.metadata_json->>'hour' AS timestamp)) AS month,
           SUM(t.amount) AS charged, s.monthly_cap
      FROM transactions t JOIN subscriptions s ON s.id = t.subscription_id
     WHERE s.user_id = :user AND t.type = 'charge' AND t.metadata_json->>'kind' = 'hourly'
     GROUP BY s.id, month, s.monthly_cap
    HAVING SUM(t.amount) > s.monthly_cap
    """
)


def test_money_moves_keep_the_ledger_rule(
    db: Session, buy: Buy, billing_run: Run, app_settings: Settings
) -> None:
    admin = make_user(db, role="admin")

    class Money(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.user = make_user(db, balance="25.00")
            self.clock: datetime = utcnow()
            self.instances: list[Instance] = []

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
            subscriptions.settle_debts(db=db, user_id=self.user.id, now=self.clock)

        @rule(amount=AMOUNTS)
        def credit(self, amount: Decimal) -> None:
            billing.grant_credit(
                db=db, user_id=self.user.id, amount=str(amount), reason="goodwill", admin=admin
            )

        @rule(cycle=st.sampled_from(["hourly", "monthly", "yearly"]))
        def purchase(self, cycle: str) -> None:
            if len(self.instances) >= 6:
                return
            try:
                with db.begin_nested():
                    self.instances.append(buy(self.user, cycle))
            except ledger.InsufficientFundsError:
                pass

        # An hour, a day, a week, past a month's end (renewals, grace days run out).
        @rule(hours=st.sampled_from([1, 3, 24, 24 * 7, 24 * 32]))
        def time_passes(self, hours: int) -> None:
            # Hourly runs, renewals, suspensions and expiries all happen in the run.
            self.clock += timedelta(hours=hours)
            billing_run(self.clock)

        @rule(data=st.data())
        def delete(self, data: st.DataObject) -> None:
            live = [i for i in self.instances if i.status not in compute.NOT_DELETABLE]
            if not live:
                return
            instance = data.draw(st.sampled_from(live))
            db.refresh(instance)
            if instance.status not in compute.NOT_DELETABLE:
                compute.delete_instance(db=db, instance=instance)

        @rule(data=st.data())
        def refund_a_charge(self, data: st.DataObject) -> None:
            charges = db.query(Transaction).filter_by(user_id=self.user.id, type="charge").all()
            if not charges:
                return
            charge = data.draw(st.sampled_from(charges))
            amount = data.draw(st.decimals(min_value=Decimal("0.01"), max_value=charge.amount))
            try:
                with db.begin_nested():
                    payments.refund_transaction(
                        db=db,
                        admin=admin,
                        transaction_id=charge.id,
                        amount=str(amount.quantize(Decimal("0.01"))),
                        reason="goodwill",
                        settings=app_settings,
                    )
            except ProblemError:
                pass  # more than is left to refund: refused, nothing changed

        @invariant()
        def ledger_rule_holds(self) -> None:
            db.flush()
            assert [m for m in ledger.verify(db=db) if m.user_id == self.user.id] == []
            db.refresh(self.user)
            assert self.user.balance is not None and self.user.balance >= 0

        @invariant()
        def hourly_months_stay_under_the_cap(self) -> None:
            assert db.execute(_CAPS, {"user": self.user.id}).all() == []

    run_state_machine_as_test(
        Money,
        settings=settings(
            max_examples=12,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
