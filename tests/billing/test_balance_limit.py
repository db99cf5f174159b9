"""The largest balance a customer can hold (``users.balance`` is ``NUMERIC(10,2)``): a credit,
top-up or refund that would pass it is refused before any money moves, and a provider's
confirmation of a payment already captured is recorded for staff, never lost or retried."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.billing.payment_support import entries_of, ledger_clean
from tests.factories.accounts import PASSWORD, fund, make_user
from tests.factories.billing import pending_payment
from tests.helpers import bearer, login
from vmcloud.accounts.models import User
from vmcloud.audit.models import AuditLog
from vmcloud.billing import ledger
from vmcloud.billing.models import Transaction
from vmcloud.billing.payments import sandbox
from vmcloud.config import Settings

NEAR_THE_TOP = ledger.MAX_BALANCE - Decimal("10.00")


def balance(db: Session, user: User) -> Decimal:
    db.refresh(user, attribute_names=["balance"])
    return Decimal(user.balance or 0)


@pytest.fixture
def staff(client: TestClient, db: Session) -> dict[str, str]:
    return bearer(login(client, make_user(db, role="admin").username, PASSWORD))


def test_the_maximum_balance_is_what_the_column_holds() -> None:
    assert Decimal("99999999.99") == ledger.MAX_BALANCE


def test_an_admin_credit_past_the_maximum_is_409_and_moves_nothing(
    client: TestClient, db: Session, staff: dict[str, str]
) -> None:
    customer = make_user(db, balance="1.00")
    url = f"/api/v1/admin/users/{customer.id}/credits"
    response = client.post(url, json={"amount": "99999999.99", "reason": "fuzz"}, headers=staff)
    assert response.status_code == 409, response.text
    assert response.json()["type"] == "/problems/balance-limit"
    assert balance(db, customer) == Decimal("1.00")
    assert entries_of(db, customer.id) == 1  # the funding credit only
    # Up to the maximum exactly is fine.
    exact = client.post(url, json={"amount": "99999998.99", "reason": "fill"}, headers=staff)
    assert exact.status_code == 201, exact.text
    assert balance(db, customer) == ledger.MAX_BALANCE
    assert ledger_clean(db, customer.id)


def test_a_top_up_that_would_pass_the_maximum_is_refused_before_checkout(
    client: TestClient, db: Session
) -> None:
    customer = make_user(db, balance=NEAR_THE_TOP)
    auth = bearer(login(client, customer.username, PASSWORD))
    response = client.post(
        "/api/v1/billing/top-ups", json={"amount": "25.00", "provider": "sandbox"}, headers=auth
    )
    assert response.status_code == 409, response.text
    assert response.json()["type"] == "/problems/balance-limit"
    assert entries_of(db, customer.id) == 1
    fits = client.post(
        "/api/v1/billing/top-ups", json={"amount": "10.00", "provider": "sandbox"}, headers=auth
    )
    assert fits.status_code == 201, fits.text


def test_a_charge_refund_past_the_maximum_is_409(
    client: TestClient, db: Session, staff: dict[str, str]
) -> None:
    customer = make_user(db, balance="50.00")
    charge = ledger.post(
        db=db, user_id=customer.id, type_="charge", amount=Decimal("40.00"), currency="USD"
    )
    fund(db, customer, ledger.MAX_BALANCE - Decimal("15.00"))
    url = f"/api/v1/admin/transactions/{charge.id}/refund"
    response = client.post(url, json={"reason": "goodwill"}, headers=staff)
    assert response.status_code == 409, response.text
    assert response.json()["type"] == "/problems/balance-limit"
    assert balance(db, customer) == ledger.MAX_BALANCE - Decimal("5.00")
    assert ledger_clean(db, customer.id)


def _deliver(client: TestClient, settings: Settings, entry: Transaction, outcome: str) -> Any:
    provider = sandbox.SandboxProvider(settings)
    assert entry.provider_transaction_id is not None
    payload = sandbox.build_event(
        provider_transaction_id=entry.provider_transaction_id,
        outcome=outcome,
        amount=entry.amount,
        currency=entry.currency or "",
    )
    url = "/api/v1/billing/webhooks/sandbox"
    return client.post(url, content=payload, headers=provider.signed_headers(payload))


def test_a_captured_payment_that_cannot_be_credited_is_kept_for_staff(
    client: TestClient, db: Session, app_settings: Settings
) -> None:
    customer = make_user(db, balance="1.00")
    entry = pending_payment(db, customer.id, "sandbox", f"sbx_{uuid.uuid4().hex}", "20.00")
    # Staff credit the customer to the top while the checkout is open.
    fund(db, customer, ledger.MAX_BALANCE - Decimal("1.00"))
    db.commit()

    response = _deliver(client, app_settings, entry, "pay")
    assert response.status_code == 200, response.text  # the provider must stop retrying
    db.refresh(entry)
    assert entry.status == "pending"
    assert entry.metadata_json is not None
    assert entry.metadata_json["not_credited"] == "balance-limit"
    assert balance(db, customer) == ledger.MAX_BALANCE
    actions = db.scalars(select(AuditLog.action).where(AuditLog.entity_id == entry.id)).all()
    assert "transaction.payment_not_credited" in actions
    assert ledger_clean(db, customer.id)

    # Once there is room, the same confirmation delivered again credits the payment.
    ledger.post(
        db=db, user_id=customer.id, type_="charge", amount=Decimal("100.00"), currency="USD"
    )
    db.commit()
    again = _deliver(client, app_settings, entry, "pay")
    assert again.status_code == 200, again.text
    db.refresh(entry)
    assert entry.status == "completed"
    assert balance(db, customer) == ledger.MAX_BALANCE - Decimal("80.00")
    assert ledger_clean(db, customer.id)
