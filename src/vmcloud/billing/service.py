"""Billing operations built on the ledger."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.billing.models import Transaction
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
