"""Stripe webhooks, signed here with a test secret exactly as Stripe signs them: valid events
complete or fail a payment once; forged, tampered and replayed (stale) deliveries are 400 and
change nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.billing.payment_support import ledger_clean, stripe_client
from tests.factories.accounts import make_user
from tests.factories.billing import pending_payment
from tests.fakes.stripe import STRIPE_WEBHOOK_SECRET, fake_stripe, signature, stripe_event
from vmcloud.accounts.models import User
from vmcloud.audit.models import AuditLog
from vmcloud.billing.models import Transaction
from vmcloud.config import Settings

WEBHOOK = "/api/v1/billing/webhooks/stripe"
SESSION = "cs_test_webhook_1"


@pytest.fixture
def stripe(
    app_settings: Settings, engine: Engine, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    with fake_stripe() as fake, stripe_client(app_settings, engine, session_factory, fake) as c:
        yield c


@pytest.fixture
def payment(db: Session) -> Transaction:
    user = make_user(db)
    return pending_payment(db, user.id, "stripe", SESSION, "20.00")


def deliver(client: TestClient, payload: bytes, **options: Any) -> Any:
    secret = options.pop("secret", STRIPE_WEBHOOK_SECRET)
    header = signature(payload, secret, options.pop("timestamp", None))
    return client.post(WEBHOOK, content=payload, headers={"Stripe-Signature": header})


def state(db: Session, entry: Transaction) -> tuple[str | None, Decimal]:
    db.refresh(entry)
    user = db.get(User, entry.user_id, populate_existing=True)
    assert user is not None
    return entry.status, Decimal(user.balance or 0)


def test_a_paid_checkout_completes_the_payment_once(
    stripe: TestClient, db: Session, payment: Transaction
) -> None:
    event = stripe_event("checkout.session.completed", SESSION, payment_intent="pi_123")
    for _ in range(2):  # Stripe delivers at least once
        response = deliver(stripe, event)
        assert response.status_code == 200, response.text
        assert response.json() == {"received": True}
    assert state(db, payment) == ("completed", Decimal("20.00"))
    assert payment.metadata_json is not None
    assert payment.metadata_json["payment_intent"] == "pi_123"
    assert payment.metadata_json["event_id"] == "evt_test_1"
    # The same payment confirmed by another event id changes nothing either.
    other = stripe_event("checkout.session.async_payment_succeeded", SESSION, event_id="evt_2")
    assert deliver(stripe, other).status_code == 200
    assert state(db, payment) == ("completed", Decimal("20.00"))
    actions = db.scalars(select(AuditLog.action).where(AuditLog.entity_id == payment.id)).all()
    assert actions.count("transaction.payment") == 1
    assert ledger_clean(db, payment.user_id)


def test_forged_tampered_and_stale_events_are_refused(
    stripe: TestClient, db: Session, payment: Transaction
) -> None:
    event = stripe_event("checkout.session.completed", SESSION)
    forged = deliver(stripe, event, secret="whsec_someone_else")
    tampered_header = signature(event, STRIPE_WEBHOOK_SECRET)
    tampered = stripe.post(
        WEBHOOK,
        content=event.replace(b"2000", b"9000"),
        headers={"Stripe-Signature": tampered_header},
    )
    stale = deliver(stripe, event, timestamp=int(time.time()) - 301)
    missing = stripe.post(WEBHOOK, content=event)
    garbled = stripe.post(WEBHOOK, content=event, headers={"Stripe-Signature": "t=x,v1"})
    for response in (forged, tampered, stale, missing, garbled):
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "/problems/invalid-signature"
        assert STRIPE_WEBHOOK_SECRET not in response.text
    assert state(db, payment) == ("pending", Decimal("0.00"))
    assert ledger_clean(db, payment.user_id)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"type": "x"}', b"\xff\xfe"])
def test_signed_bodies_that_are_not_events_are_400(
    stripe: TestClient, db: Session, payment: Transaction, body: bytes
) -> None:
    response = deliver(stripe, body)
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/malformed-event"
    assert state(db, payment) == ("pending", Decimal("0.00"))


def test_an_async_payment_completes_when_it_clears(
    stripe: TestClient, db: Session, payment: Transaction
) -> None:
    started = stripe_event("checkout.session.completed", SESSION, payment_status="unpaid")
    assert deliver(stripe, started).status_code == 200
    assert state(db, payment) == ("pending", Decimal("0.00"))
    cleared = stripe_event("checkout.session.async_payment_succeeded", SESSION, event_id="evt_2")
    assert deliver(stripe, cleared).status_code == 200
    assert state(db, payment) == ("completed", Decimal("20.00"))
    assert ledger_clean(db, payment.user_id)


@pytest.mark.parametrize(
    "kind", ["checkout.session.async_payment_failed", "checkout.session.expired"]
)
def test_failed_and_expired_checkouts_fail_the_payment(
    stripe: TestClient, db: Session, payment: Transaction, kind: str
) -> None:
    assert deliver(stripe, stripe_event(kind, SESSION, payment_status="unpaid")).status_code == 200
    assert state(db, payment) == ("failed", Decimal("0.00"))
    # A success arriving after the failure changes no money; staff are told in the audit log.
    late = stripe_event("checkout.session.completed", SESSION, event_id="evt_late")
    assert deliver(stripe, late).status_code == 200
    assert state(db, payment) == ("failed", Decimal("0.00"))
    actions = db.scalars(select(AuditLog.action).where(AuditLog.entity_id == payment.id)).all()
    assert "transaction.payment_after_failure" in actions
    assert ledger_clean(db, payment.user_id)


def test_a_payment_for_another_amount_is_not_credited(
    stripe: TestClient, db: Session, payment: Transaction
) -> None:
    for event in (
        stripe_event("checkout.session.completed", SESSION, amount_total=1999),
        stripe_event("checkout.session.completed", SESSION, currency="eur"),
    ):
        assert deliver(stripe, event).status_code == 200
    assert state(db, payment) == ("pending", Decimal("0.00"))


def test_unknown_sessions_and_other_events_are_acknowledged(
    stripe: TestClient, db: Session, payment: Transaction
) -> None:
    for event in (
        stripe_event("checkout.session.completed", "cs_test_somebody_else"),
        stripe_event("payment_intent.created", SESSION),
        stripe_event("charge.refunded", SESSION),
    ):
        assert deliver(stripe, event).status_code == 200
    assert state(db, payment) == ("pending", Decimal("0.00"))


def test_a_sandbox_payment_cannot_be_completed_through_stripe(
    stripe: TestClient, db: Session
) -> None:
    user = make_user(db)
    entry = pending_payment(db, user.id, "sandbox", SESSION)
    assert deliver(stripe, stripe_event("checkout.session.completed", SESSION)).status_code == 200
    assert state(db, entry) == ("pending", Decimal("0.00"))


def test_without_a_webhook_secret_stripe_webhooks_are_503(
    client: TestClient, db: Session, payment: Transaction
) -> None:
    response = deliver(client, stripe_event("checkout.session.completed", SESSION))
    assert response.status_code == 503
    assert state(db, payment) == ("pending", Decimal("0.00"))
