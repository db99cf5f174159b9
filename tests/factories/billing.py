"""Billing objects for tests: ledger entries as the payment paths leave them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from vmcloud.billing import ledger
from vmcloud.billing.models import Transaction


def pending_payment(
    db: Session, user_id: Any, provider: str, provider_id: str, amount: str = "20.00"
) -> Transaction:
    return ledger.post(
        db=db,
        user_id=user_id,
        type_="payment",
        amount=Decimal(amount),
        currency="USD",
        status="pending",
        payment_method="card" if provider == "stripe" else provider,
        payment_provider=provider,
        provider_transaction_id=provider_id,
    )
