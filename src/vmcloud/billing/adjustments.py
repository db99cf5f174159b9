"""Staff adjustments of a balance, side by side: credits (money given) and debits (money
taken), each a ledger entry with the reason and the staff member, audited."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.billing import dunning, ledger
from vmcloud.billing.models import Transaction
from vmcloud.core.errors import NotFoundError
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CURRENCY


def _entry(
    *, db: Session, user_id: uuid.UUID, type_: str, amount: str, reason: str, admin: User
) -> Transaction:
    if db.get(User, user_id) is None:
        raise NotFoundError("There is no such user.")
    entry = ledger.post(
        db=db,
        user_id=user_id,
        type_=type_,
        amount=ledger.money(amount),
        currency=site_settings.get(db, CURRENCY),
        payment_method="manual",
        payment_provider="manual",
        metadata={"reason": reason, "by": str(admin.id)},
    )
    audit.label(entry, f"transaction.{type_}")
    return entry


def credit(
    *, db: Session, user_id: uuid.UUID, amount: str, reason: str, admin: User
) -> Transaction:
    """Give money (409 past the largest balance); it pays what is overdue first."""
    entry = _entry(
        db=db, user_id=user_id, type_="credit", amount=amount, reason=reason, admin=admin
    )
    dunning.settle_debts(db=db, user_id=user_id)
    return entry


def debit(*, db: Session, user_id: uuid.UUID, amount: str, reason: str, admin: User) -> Transaction:
    """Take money off the balance (402 when it does not cover the amount)."""
    return _entry(db=db, user_id=user_id, type_="debit", amount=amount, reason=reason, admin=admin)
