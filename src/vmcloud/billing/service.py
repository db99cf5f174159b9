"""Billing operations built on the ledger."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.billing import ledger
from vmcloud.billing.ledger import ADDS
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


def _staff_filter(
    *,
    user_id: uuid.UUID | None,
    type_: str | None,
    status: str | None,
    subscription_id: uuid.UUID | None,
    provider: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if user_id is not None:
        found.append(Transaction.user_id == user_id)
    if type_:
        found.append(Transaction.type == type_)
    if status:
        found.append(Transaction.status == status)
    if subscription_id is not None:
        found.append(Transaction.subscription_id == subscription_id)
    if provider:
        found.append(Transaction.payment_provider == provider)
    if since is not None:
        found.append(Transaction.created_at >= since)
    if until is not None:
        found.append(Transaction.created_at < until)
    return found


def list_all_transactions(
    *,
    db: Session,
    params: PageParams,
    user_id: uuid.UUID | None = None,
    type_: str | None = None,
    status: str | None = None,
    subscription_id: uuid.UUID | None = None,
    provider: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[Transaction], str | None]:
    """Staff view of the ledger, newest first (``since`` inclusive, ``until`` exclusive, on
    ``created_at``)."""
    where = _staff_filter(
        user_id=user_id, type_=type_, status=status, subscription_id=subscription_id,
        provider=provider, since=since, until=until,
    )  # fmt: skip
    stmt = select(Transaction).where(*where)
    return paginate(db, stmt, order_by=(Transaction.created_at, Transaction.id), params=params)


@dataclass(frozen=True)
class LedgerTotal:
    """The entries of one type and status among a filter's rows: how many, and their sum."""

    type: str
    status: str | None
    count: int
    amount: Decimal

    @property
    def signed(self) -> Decimal:
        """What these entries did to balances (only completed entries move one)."""
        if self.status != "completed":
            return Decimal("0.00")
        return self.amount if self.type in ADDS else -self.amount


def ledger_totals(
    *,
    db: Session,
    user_id: uuid.UUID | None = None,
    type_: str | None = None,
    status: str | None = None,
    subscription_id: uuid.UUID | None = None,
    provider: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[LedgerTotal]:
    """The sums of every row :func:`list_all_transactions` lists with the same filter (all its
    pages), by type and status. It reads every matching row: narrow by user or dates on a
    large ledger."""
    where = _staff_filter(
        user_id=user_id, type_=type_, status=status, subscription_id=subscription_id,
        provider=provider, since=since, until=until,
    )  # fmt: skip
    rows = db.execute(
        select(
            Transaction.type,
            Transaction.status,
            func.count(),
            func.coalesce(func.sum(Transaction.amount), 0),
        )
        .where(*where)
        .group_by(Transaction.type, Transaction.status)
        .order_by(Transaction.type, Transaction.status)
    )
    return [LedgerTotal(row[0], row[1], int(row[2]), Decimal(row[3])) for row in rows]


def newest_transaction_key(
    *, db: Session, user_id: uuid.UUID | None = None
) -> tuple[datetime | None, uuid.UUID] | None:
    """The staff list's order key of the newest entry (of one user): a live page re-reads
    only when it changed."""
    stmt = select(Transaction.created_at, Transaction.id)
    if user_id is not None:
        stmt = stmt.where(Transaction.user_id == user_id)
    row = db.execute(
        stmt.order_by(Transaction.created_at.desc(), Transaction.id.desc()).limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def get_transaction(*, db: Session, transaction_id: uuid.UUID) -> Transaction:
    """One ledger entry, for staff (404 when there is none)."""
    entry = db.get(Transaction, transaction_id)
    if entry is None:
        raise NotFoundError("There is no such transaction.")
    return entry


def refunds_of(*, db: Session, transaction_id: uuid.UUID) -> list[Transaction]:
    """The entries that give (part of) an entry back (``refund_of``), oldest first."""
    stmt = (
        select(Transaction)
        .where(Transaction.refund_of == transaction_id)
        .order_by(Transaction.created_at, Transaction.id)
    )
    return list(db.scalars(stmt))


@dataclass(frozen=True)
class BalanceCheck:
    """A user's balance beside the sum of their completed ledger entries."""

    balance: Decimal
    ledger: Decimal

    @property
    def agrees(self) -> bool:
        return self.balance == self.ledger


def balance_check(*, db: Session, user_id: uuid.UUID) -> BalanceCheck | None:
    """One user's balance against their whole ledger (None when there is no such user)."""
    balance = db.scalar(select(User.balance).where(User.id == user_id))
    if balance is None and db.get(User, user_id) is None:
        return None
    mismatches = ledger.verify(db=db, user_id=user_id)
    amount = Decimal(balance or 0)
    return BalanceCheck(amount, mismatches[0].ledger if mismatches else amount)
