"""Billing operations built on the ledger."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.billing import dunning, ledger
from vmcloud.billing.models import Transaction
from vmcloud.core.errors import NotFoundError
from vmcloud.core.pagination import PageParams, paginate
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CURRENCY


def balance_of(*, db: Session, user: User) -> tuple[Decimal, str]:
    db.refresh(user, attribute_names=["balance"])
    return Decimal(user.balance or 0), site_settings.get(db, CURRENCY)


def list_transactions(
    *, db: Session, user: User, params: PageParams
) -> tuple[list[Transaction], str | None]:
    stmt = select(Transaction).where(Transaction.user_id == user.id)
    return paginate(db, stmt, order_by=(Transaction.created_at, Transaction.id), params=params)


def list_all_transactions(
    *,
    db: Session,
    params: PageParams,
    user_id: uuid.UUID | None = None,
    type_: str | None = None,
    status: str | None = None,
    subscription_id: uuid.UUID | None = None,
) -> tuple[list[Transaction], str | None]:
    """Staff view of the ledger, newest first."""
    stmt = select(Transaction)
    if user_id is not None:
        stmt = stmt.where(Transaction.user_id == user_id)
    if type_:
        stmt = stmt.where(Transaction.type == type_)
    if status:
        stmt = stmt.where(Transaction.status == status)
    if subscription_id is not None:
        stmt = stmt.where(Transaction.subscription_id == subscription_id)
    return paginate(db, stmt, order_by=(Transaction.created_at, Transaction.id), params=params)


def staff_entry(
    *, db: Session, user_id: uuid.UUID, type_: str, amount: str, reason: str, admin: User
) -> Transaction:
    """A manual ``credit`` or ``debit`` by staff, with the reason and the staff member in the
    ledger (a debit the balance does not cover is 402). A credit pays what is overdue."""
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
    if type_ == "credit":
        dunning.settle_debts(db=db, user_id=user_id)
    return entry


def grant_credit(
    *, db: Session, user_id: uuid.UUID, amount: str, reason: str, admin: User
) -> Transaction:
    return staff_entry(
        db=db, user_id=user_id, type_="credit", amount=amount, reason=reason, admin=admin
    )
