"""Billing changes are announced to open panel pages (``core.events``) exactly when they
commit: balances (the ledger and the hourly run), top-ups (created, paid, declined) and
subscriptions (cancelled, ended, billed by the hourly run)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from tests.factories.accounts import make_user
from vmcloud.billing import hourly, ledger, subscriptions
from vmcloud.billing.models import Subscription
from vmcloud.billing.payments import sandbox, service
from vmcloud.config import Settings
from vmcloud.core import events
from vmcloud.core.jobs import libpq_url

Event = dict[str, str | None]


class Listener:
    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(libpq_url(url), autocommit=True)
        self.conn.execute(f"LISTEN {events.CHANNEL}")

    def received(self, wait: float = 0.5) -> list[Event]:
        heard = [json.loads(n.payload) for n in self.conn.notifies(timeout=wait)]
        # Audit rows are announced to staff pages too (tests/audit/test_announce.py).
        return [event for event in heard if event["kind"] != "audit"]


@pytest.fixture
def database(fresh_database_url: str) -> Iterator[tuple[Session, Listener]]:
    engine = create_engine(fresh_database_url)
    listener = Listener(fresh_database_url)
    try:
        with Session(engine) as db:
            yield db, listener
    finally:
        listener.conn.close()
        engine.dispose()


def credit(db: Session, user_id: uuid.UUID, amount: str = "5.00") -> None:
    ledger.post(db=db, user_id=user_id, type_="credit", amount=Decimal(amount), currency="USD")


def test_a_committed_credit_is_announced_and_a_rolled_back_one_is_not(
    database: tuple[Session, Listener],
) -> None:
    db, listener = database
    user = make_user(db)
    db.commit()
    credit(db, user.id)
    db.rollback()
    assert listener.received() == []
    credit(db, user.id)
    db.commit()
    assert listener.received() == [{"kind": "balance", "user": str(user.id)}]


def test_a_refused_debit_announces_nothing(database: tuple[Session, Listener]) -> None:
    db, listener = database
    user = make_user(db)
    db.commit()
    with pytest.raises(ledger.InsufficientFundsError):
        ledger.post(db=db, user_id=user.id, type_="debit", amount=Decimal(1), currency="USD")
    db.commit()
    assert listener.received() == []


def test_a_top_up_is_announced_when_created_and_when_paid(
    database: tuple[Session, Listener], app_settings: Settings
) -> None:
    db, listener = database
    user = make_user(db)
    made = service.create_top_up(
        db=db, user=user, amount="20.00", provider="sandbox", settings=app_settings
    )
    db.commit()
    top_up = {"kind": "top_up", "user": str(user.id), "id": str(made.entry.id)}
    assert listener.received() == [top_up]

    provider = sandbox.SandboxProvider(app_settings)
    payload = sandbox.build_event(
        provider_transaction_id=made.entry.provider_transaction_id or "",
        outcome="pay",
        amount=Decimal("20.00"),
        currency="USD",
    )
    headers = provider.signed_headers(payload)
    service.handle_webhook(db=db, provider=provider, payload=payload, headers=headers)
    db.commit()
    got = listener.received()
    assert top_up in got and {"kind": "balance", "user": str(user.id)} in got
    # A repeated delivery changes nothing and says nothing.
    service.handle_webhook(db=db, provider=provider, payload=payload, headers=headers)
    db.commit()
    assert listener.received() == []


def hourly_subscription(db: Session, user_id: uuid.UUID, start: datetime) -> Subscription:
    sub = Subscription(
        user_id=user_id,
        type="hourly",
        price=Decimal("0.50"),
        rate=Decimal("0.50"),
        currency="USD",
        status="active",
        auto_renew=True,
        period_start=start,
        period_end=start + timedelta(hours=1),
    )
    db.add(sub)
    db.flush()
    return sub


def test_cancelling_renewal_is_announced(database: tuple[Session, Listener]) -> None:
    db, listener = database
    user = make_user(db)
    sub = hourly_subscription(db, user.id, datetime(2026, 1, 1, 10))
    db.commit()
    subscriptions.cancel(db=db, sub=sub)
    db.commit()
    changed = {"kind": "subscription", "user": str(user.id), "id": str(sub.id)}
    assert listener.received() == [changed]


def test_the_hourly_run_announces_balances_and_subscriptions_it_moved(
    database: tuple[Session, Listener],
) -> None:
    db, listener = database
    paying, broke = make_user(db, balance="10.00"), make_user(db)
    start = datetime(2026, 1, 1, 10)
    hourly_subscription(db, paying.id, start)
    hourly_subscription(db, broke.id, start)
    db.commit()
    listener.received()
    hourly.bill_batch(db=db, now=start + timedelta(hours=1, minutes=1))
    db.commit()
    got = listener.received()
    assert {"kind": "balance", "user": str(paying.id)} in got
    assert {"kind": "balance", "user": str(broke.id)} not in got  # nothing taken: past due
    for user in (paying, broke):
        assert {"kind": "subscription", "user": str(user.id)} in got
