"""The ledger: the only code that changes ``users.balance`` (besides the hourly run's
set-based statement, ``billing.hourly``, which announces its changes the same way).

Every change of a balance is exactly one ``transactions`` row written in the same database
transaction, and for every user ``balance = Σ payment + Σ credit + Σ refund - Σ charge -
Σ debit`` over completed entries. Balances change with one guarded ``UPDATE``: a debit that
the balance does not cover matches no row and changes nothing, so concurrent debits can never
take a balance below zero (a CHECK constraint says so too). Money in is guarded the same way
against ``MAX_BALANCE``, the most ``users.balance`` (``NUMERIC(10,2)``) can hold: an entry that
would pass it matches no row, changes nothing and is a 409. Every change is announced to the
panel (``core.events``, kind ``balance``) in its transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.billing.models import Transaction
from vmcloud.core import events
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ConflictError, InvalidInputError, ProblemError

ADDS = ("payment", "credit", "refund")
SUBTRACTS = ("charge", "debit")
CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("99999999.99")
MAX_BALANCE = Decimal("99999999.99")  # users.balance is NUMERIC(10,2)


class InsufficientFundsError(ProblemError):
    status = 402
    type = "insufficient-funds"
    title = "Insufficient funds"


class BalanceLimitError(ConflictError):
    type = "balance-limit"
    title = "Balance limit reached"

    def __init__(self) -> None:
        super().__init__(f"A balance cannot exceed {MAX_BALANCE}; this amount would pass it.")


def check_room(*, db: Session, user_id: uuid.UUID, amount: Decimal) -> None:
    """409 when adding ``amount`` now would take the balance past ``MAX_BALANCE`` (checked
    before money is asked for; the guarded ``UPDATE`` decides when it actually arrives)."""
    balance = db.scalar(select(func.coalesce(User.balance, 0)).where(User.id == user_id))
    if balance is not None and balance + amount > MAX_BALANCE:
        raise BalanceLimitError()


def money(value: Decimal | str | int) -> Decimal:
    """An amount in cents; ``InvalidInputError`` unless positive, finite and in range."""
    amount = Decimal(value)
    if not amount.is_finite() or amount != amount.quantize(CENT, rounding=ROUND_HALF_UP):
        raise InvalidInputError(
            "Amounts have at most two decimal places.",
            errors=[{"field": "amount", "message": "at most two decimal places"}],
        )
    if not CENT <= amount <= MAX_AMOUNT:
        raise InvalidInputError(
            "The amount is out of range.",
            errors=[{"field": "amount", "message": "between 0.01 and 99999999.99"}],
        )
    return amount.quantize(CENT)


def _apply(db: Session, *, user_id: uuid.UUID, type_: str, amount: Decimal) -> None:
    if type_ in ADDS:
        stmt = (
            update(User)
            .where(User.id == user_id, func.coalesce(User.balance, 0) <= MAX_BALANCE - amount)
            .values(balance=func.coalesce(User.balance, 0) + amount)
            .returning(User.id)
        )
    else:
        stmt = (
            update(User)
            .where(User.id == user_id, func.coalesce(User.balance, 0) >= amount)
            .values(balance=func.coalesce(User.balance, 0) - amount)
            .returning(User.id)
        )
    changed = db.execute(stmt.execution_options(synchronize_session="fetch")).scalar_one_or_none()
    if changed is None and type_ in ADDS:
        raise BalanceLimitError()
    if changed is None:
        raise InsufficientFundsError("The balance does not cover this amount.")
    # Open panel pages show the new balance once (and only if) this transaction commits.
    events.announce(db, kind="balance", user_id=user_id)


def post(
    *,
    db: Session,
    user_id: uuid.UUID,
    type_: str,
    amount: Decimal,
    currency: str,
    status: str = "completed",
    subscription_id: uuid.UUID | None = None,
    payment_method: str | None = None,
    payment_provider: str | None = None,
    provider_transaction_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    period_key: str | None = None,
    refund_of: uuid.UUID | None = None,
) -> Transaction:
    """Write one ledger entry; a completed one moves the balance in the same transaction."""
    if type_ not in ADDS + SUBTRACTS:
        raise ValueError(f"unknown transaction type {type_!r}")
    amount = money(amount)
    if status == "completed":
        _apply(db, user_id=user_id, type_=type_, amount=amount)
    entry = Transaction(
        user_id=user_id,
        subscription_id=subscription_id,
        amount=amount,
        currency=currency,
        type=type_,
        status=status,
        payment_method=payment_method,
        payment_provider=payment_provider,
        provider_transaction_id=provider_transaction_id,
        metadata_json=metadata,
        processed_at=utcnow() if status == "completed" else None,
        period_key=period_key,
        refund_of=refund_of,
    )
    db.add(entry)
    db.flush()
    return entry


def complete(*, db: Session, entry_id: uuid.UUID) -> Transaction | None:
    """Complete a pending entry (a payment the provider confirmed); completing one twice does
    nothing the second time. Returns the entry, or ``None`` if there is none."""
    entry = db.get(Transaction, entry_id, with_for_update=True)
    if entry is None or entry.status != "pending":
        return entry
    _apply(db, user_id=entry.user_id, type_=entry.type, amount=entry.amount)
    entry.status = "completed"
    entry.processed_at = utcnow()
    db.flush()
    return entry


def given_back(db: Session, original_id: uuid.UUID) -> Decimal:
    """How much of an entry has been given back by entries pointing at it (``refund_of``),
    pending ones included: they are on their way."""
    total = db.scalar(
        select(func.coalesce(func.sum(Transaction.amount), 0)).where(
            Transaction.refund_of == original_id,
            Transaction.status.in_(("pending", "completed")),
        )
    )
    return Decimal(total or 0)


@dataclass(frozen=True)
class Mismatch:
    user_id: uuid.UUID
    balance: Decimal
    ledger: Decimal


# An entry's effect on the balance, in SQL (``t`` is the entry); only completed entries count.
SIGNED_AMOUNT = (
    "CASE WHEN t.type IN ('payment', 'credit', 'refund') THEN t.amount ELSE -t.amount END"
)

_VERIFY = text(
    f"""
    SELECT u.id, COALESCE(u.balance, 0) AS balance,
           COALESCE(SUM({SIGNED_AMOUNT}) FILTER (WHERE t.status = 'completed'), 0) AS ledger
      FROM users u LEFT JOIN transactions t ON t.user_id = u.id
     WHERE CAST(:user_id AS uuid) IS NULL OR u.id = CAST(:user_id AS uuid)
     GROUP BY u.id, u.balance
    HAVING COALESCE(u.balance, 0)
           <> COALESCE(SUM({SIGNED_AMOUNT}) FILTER (WHERE t.status = 'completed'), 0)
    """
)


def verify(*, db: Session, user_id: uuid.UUID | None = None) -> list[Mismatch]:
    """Every user (or just ``user_id``) whose balance differs from the sum of their completed
    ledger entries, read from the whole ledger and changing nothing. The periodic check and
    ``vmcloud billing verify`` use :mod:`vmcloud.billing.verification`, which reads only what
    changed since its last check."""
    rows = db.execute(_VERIFY, {"user_id": str(user_id) if user_id else None})
    return [Mismatch(row[0], Decimal(row[1]), Decimal(row[2])) for row in rows]
