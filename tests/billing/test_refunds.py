"""Staff refunds and debits: a refunded charge goes back to the balance, a refunded payment is
given back through its provider and leaves the balance; never more than was paid."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.billing.payment_support import entries_of, ledger_clean, stripe_client
from tests.factories.accounts import PASSWORD, make_user
from tests.factories.billing import pending_payment
from tests.fakes.stripe import STRIPE_API_KEY, FakeStripe, fake_stripe
from tests.helpers import bearer, login
from vmcloud.accounts.models import User
from vmcloud.audit.models import AuditLog
from vmcloud.billing import ledger
from vmcloud.billing.models import Subscription, Transaction
from vmcloud.config import Settings
from vmcloud.core.clock import utcnow


def post(db: Session, user: User, type_: str, amount: str, **options: Any) -> Transaction:
    return ledger.post(
        db=db, user_id=user.id, type_=type_, amount=Decimal(amount), currency="USD", **options
    )


def paid(db: Session, user: User, provider: str, amount: str, **meta: Any) -> Transaction:
    entry = pending_payment(db, user.id, provider, f"{provider}_{uuid.uuid4().hex}", amount)
    entry.metadata_json = meta or None
    ledger.complete(db=db, entry_id=entry.id)
    return entry


def balance(db: Session, user: User) -> Decimal:
    db.refresh(user, attribute_names=["balance"])
    return Decimal(user.balance or 0)


@pytest.fixture
def staff(client: TestClient, db: Session) -> dict[str, str]:
    return bearer(login(client, make_user(db, role="admin").username, PASSWORD))


def refund(client: TestClient, auth: dict[str, str], entry_id: Any, **body: Any) -> Any:
    url = f"/api/v1/admin/transactions/{entry_id}/refund"
    return client.post(url, json={"reason": "customer asked", **body}, headers=auth)


def test_a_charge_is_refunded_to_the_balance_in_parts(
    client: TestClient, db: Session, staff: dict[str, str]
) -> None:
    user = make_user(db)
    post(db, user, "credit", "50.00")
    charge = post(db, user, "charge", "30.00")
    first = refund(client, staff, charge.id, amount="10.00")
    assert first.status_code == 201, first.text
    assert first.json()["type"] == "refund" and first.json()["amount"] == "10.00"
    assert balance(db, user) == Decimal("30.00")
    too_much = refund(client, staff, charge.id, amount="20.01")
    assert too_much.status_code == 409 and "20.00" in too_much.json()["detail"]
    rest = refund(client, staff, charge.id)  # no amount: whatever is left
    assert rest.status_code == 201 and rest.json()["amount"] == "20.00"
    assert balance(db, user) == Decimal("50.00")
    assert refund(client, staff, charge.id, amount="0.01").status_code == 409
    assert refund(client, staff, charge.id).status_code == 409
    refunds = db.scalars(select(Transaction).where(Transaction.refund_of == charge.id)).all()
    assert sorted(r.amount for r in refunds) == [Decimal("10.00"), Decimal("20.00")]
    assert all(r.metadata_json and r.metadata_json["reason"] == "customer asked" for r in refunds)
    actions = db.scalars(select(AuditLog.action).where(AuditLog.entity_id == refunds[0].id)).all()
    assert actions == ["transaction.refund"]
    assert ledger_clean(db, user.id)


def test_a_subscription_charge_is_never_refunded_beyond_what_it_charged(
    client: TestClient, db: Session, staff: dict[str, str]
) -> None:
    user = make_user(db)
    now = utcnow()
    sub = Subscription(
        user_id=user.id, type="monthly", price=Decimal("10.00"), status="cancelled",
        period_start=now, period_end=now + timedelta(days=30),
    )  # fmt: skip
    db.add(sub)
    db.flush()
    post(db, user, "credit", "10.00")
    charge = post(db, user, "charge", "10.00", subscription_id=sub.id)
    post(db, user, "refund", "8.00", subscription_id=sub.id)  # the unused days, given back
    response = refund(client, staff, charge.id)
    assert response.status_code == 201 and response.json()["amount"] == "2.00"
    assert refund(client, staff, charge.id).status_code == 409
    assert balance(db, user) == Decimal("10.00")
    assert ledger_clean(db, user.id)


def test_a_sandbox_payment_refund_is_a_debit_and_needs_the_balance(
    client: TestClient, db: Session, staff: dict[str, str]
) -> None:
    user = make_user(db)
    payment = paid(db, user, "sandbox", "40.00")
    partial = refund(client, staff, payment.id, amount="15.00")
    assert partial.status_code == 201, partial.text
    body = partial.json()
    assert body["type"] == "debit" and body["payment_provider"] == "sandbox"
    entry = db.get(Transaction, uuid.UUID(body["id"]))
    assert entry is not None and entry.refund_of == payment.id
    assert entry.provider_transaction_id and entry.provider_transaction_id.startswith("sbxr_")
    assert balance(db, user) == Decimal("25.00")
    post(db, user, "charge", "20.00")  # the customer spent most of what is left
    before = entries_of(db, user.id)
    broke = refund(client, staff, payment.id)  # 25.00 left to refund, 5.00 on the balance
    assert broke.status_code == 402
    assert broke.json()["type"] == "/problems/insufficient-funds"
    assert entries_of(db, user.id) == before and balance(db, user) == Decimal("5.00")
    assert refund(client, staff, payment.id, amount="5.00").status_code == 201
    assert balance(db, user) == Decimal("0.00")
    assert ledger_clean(db, user.id)


def test_a_stripe_payment_is_refunded_through_stripe(
    app_settings: Settings, engine: Engine, session_factory: sessionmaker[Session], db: Session
) -> None:
    user = make_user(db)
    payment = paid(db, user, "stripe", "20.00", payment_intent="pi_refund_me")
    fake: FakeStripe
    with fake_stripe() as fake, stripe_client(app_settings, engine, session_factory, fake) as c:
        auth = bearer(login(c, make_user(db, role="admin").username, PASSWORD))
        response = refund(c, auth, payment.id, amount="7.25")
        assert response.status_code == 201, response.text
        [call] = fake.requests
        fake.fail = True
        failed = refund(c, auth, payment.id, amount="1.00")
    assert call.path == "/v1/refunds"
    assert call.headers["Authorization"] == f"Bearer {STRIPE_API_KEY}"
    assert call.form["payment_intent"] == "pi_refund_me" and call.form["amount"] == "725"
    entry = db.get(Transaction, uuid.UUID(response.json()["id"]))
    assert entry is not None and entry.provider_transaction_id == "re_test_1"
    # Stripe refusing the refund leaves the ledger as it was.
    assert failed.status_code == 502
    assert balance(db, user) == Decimal("12.75")
    assert entries_of(db, user.id) == 2
    assert ledger_clean(db, user.id)


def test_only_completed_charges_and_payments_are_refundable(
    client: TestClient, db: Session, staff: dict[str, str]
) -> None:
    user = make_user(db)
    credit = post(db, user, "credit", "50.00")
    charge = post(db, user, "charge", "5.00")
    given_back = post(db, user, "refund", "1.00", refund_of=charge.id)
    debit = post(db, user, "debit", "1.00")
    pending = pending_payment(db, user.id, "sandbox", "sbx_pending")
    failed = pending_payment(db, user.id, "sandbox", "sbx_failed")
    failed.status = "failed"
    db.flush()
    before = entries_of(db, user.id)
    for entry in (credit, given_back, debit, pending, failed):
        response = refund(client, staff, entry.id)
        assert response.status_code == 409, response.text
        assert response.json()["type"] == "/problems/not-refundable"
    assert refund(client, staff, uuid.uuid4()).status_code == 404
    for bad in ({"amount": "1.001"}, {"amount": 1}, {"amount": "0"}, {"reason": ""}, {"x": 1}):
        assert refund(client, staff, charge.id, **bad).status_code == 422
    assert entries_of(db, user.id) == before
    assert ledger_clean(db, user.id)


def test_a_refund_with_an_idempotency_key_happens_once(
    client: TestClient, db: Session, staff: dict[str, str]
) -> None:
    user = make_user(db)
    post(db, user, "credit", "50.00")
    charge = post(db, user, "charge", "30.00")
    url = f"/api/v1/admin/transactions/{charge.id}/refund"
    headers = {**staff, "Idempotency-Key": "refund-once"}
    body = {"amount": "5.00", "reason": "sorry"}
    first = client.post(url, json=body, headers=headers)
    second = client.post(url, json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json() and second.headers["Idempotent-Replayed"] == "true"
    assert balance(db, user) == Decimal("25.00")
    assert ledger_clean(db, user.id)


def test_staff_debits(client: TestClient, db: Session, staff: dict[str, str]) -> None:
    user = make_user(db)
    post(db, user, "credit", "10.00")
    url = f"/api/v1/admin/users/{user.id}/debits"
    response = client.post(url, json={"amount": "4.00", "reason": "chargeback"}, headers=staff)
    assert response.status_code == 201, response.text
    assert response.json()["type"] == "debit" and response.json()["payment_provider"] == "manual"
    assert balance(db, user) == Decimal("6.00")
    over = client.post(url, json={"amount": "6.01", "reason": "x"}, headers=staff)
    assert over.status_code == 402
    missing = f"/api/v1/admin/users/{uuid.uuid4()}/debits"
    assert (
        client.post(missing, json={"amount": "1", "reason": "x"}, headers=staff).status_code == 404
    )
    for bad in ({"amount": "1"}, {"amount": 1, "reason": "x"}, {"amount": "1.234", "reason": "x"}):
        assert client.post(url, json=bad, headers=staff).status_code == 422
    mine = bearer(login(client, user.username, PASSWORD))
    assert client.post(url, json={"amount": "1", "reason": "x"}, headers=mine).status_code == 403
    assert balance(db, user) == Decimal("6.00")
    entry_id = uuid.UUID(response.json()["id"])
    actions = db.scalars(select(AuditLog.action).where(AuditLog.entity_id == entry_id)).all()
    assert actions == ["transaction.debit"]
    assert ledger_clean(db, user.id)
