"""Billing: subscriptions and the ledger (seed tables ``subscriptions`` and ``transactions``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Numeric,
    SmallInteger,
    String,
    case,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, column_property, mapped_column
from sqlalchemy.types import Uuid

from vmcloud.db.base import Base, created_at, updated_at, uuid_pk

# active: in force (auto_renew false = ends at period_end); past_due: unpaid, instance
# suspended; cancelled: ended by the customer (cancel, delete) or a failed provisioning;
# expired: ended unpaid after the grace days.
SUBSCRIPTION_STATUSES = ("active", "past_due", "cancelled", "expired")


class Subscription(Base):
    """What an instance costs and until when it is paid.

    ``monthly``/``yearly``: charged up front; ``period_start``..``period_end`` is the paid period.
    ``hourly``: charged in arrears; ``period_start``..``period_end`` is the clock hour now
    accruing, ``rate`` the exact hourly price, ``accrued`` the exact fraction of a cent
    earned but not yet charged, ``month_charged`` what the calendar month of the last billed
    hour has been charged (never above ``monthly_cap``).
    """

    __tablename__ = "subscriptions"
    __audit__ = "subscription"
    __audit_ignore__ = ("accrued", "month_charged", "updated_at", "past_due_rank")
    __table_args__ = (
        Index("idx_subscriptions_user_id", "user_id"),
        Index("idx_subscriptions_instance_id", "instance_id"),
        Index("idx_subscriptions_status", "status"),
        Index("idx_subscriptions_period_end", "period_end"),
        # -- added by 0011
        CheckConstraint("type IN ('hourly', 'monthly', 'yearly')", name="type"),
        CheckConstraint("status IN ('active', 'past_due', 'cancelled', 'expired')", name="status"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("accrued >= 0 AND month_charged >= 0", name="accrual_not_negative"),
        CheckConstraint("type <> 'hourly' OR rate IS NOT NULL", name="hourly_has_rate"),
        # The billing run's scan: subscriptions in force, by the end of their period.
        Index(
            "ix_subscriptions_due",
            "period_end",
            postgresql_where=text("status IN ('active', 'past_due')"),
        ),
        # An instance has at most one subscription in force.
        Index(
            "uq_subscriptions_live_instance",
            "instance_id",
            unique=True,
            postgresql_where=text("status IN ('active', 'past_due')"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id"))
    instance_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), ForeignKey("instances.id"))
    type: Mapped[str] = mapped_column(String(50))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    currency: Mapped[str | None] = mapped_column(String(3), server_default=text("'USD'"))
    status: Mapped[str | None] = mapped_column(String(50), server_default=text("'active'"))
    auto_renew: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    period_start: Mapped[datetime] = mapped_column(DateTime())
    period_end: Mapped[datetime] = mapped_column(DateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime | None] = created_at()
    updated_at: Mapped[datetime | None] = updated_at()
    # -- added by 0011
    rate: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    accrued: Mapped[Decimal] = mapped_column(
        Numeric(14, 6), default=Decimal(0), server_default=text("0")
    )
    month_charged: Mapped[Decimal] = mapped_column(
        Numeric(10, 2), default=Decimal(0), server_default=text("0")
    )
    monthly_cap: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    amount_due: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    past_due_since: Mapped[datetime | None] = mapped_column(DateTime())
    # Not a column: 1 for a past-due subscription, else 0, the first key of the staff list's
    # "past due first" order (``subscriptions.list_subscriptions``).
    past_due_rank: Mapped[int] = column_property(case((status == "past_due", 1), else_=0))


class Transaction(Base):
    """One ledger entry. ``amount`` is always positive; ``type`` gives the direction
    (payment, credit, refund add; charge, debit subtract). Only ``completed`` entries count."""

    __tablename__ = "transactions"
    __audit__ = "transaction"
    __table_args__ = (
        Index("idx_transactions_user_id", "user_id"),
        Index("idx_transactions_subscription_id", "subscription_id"),
        Index("idx_transactions_status", "status"),
        Index("idx_transactions_created_at", "created_at"),
        # -- added by 0010: the ledger's invariants, in the database too.
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("type IN ('payment', 'credit', 'refund', 'charge', 'debit')", name="type"),
        CheckConstraint("status IN ('pending', 'completed', 'failed', 'cancelled')", name="status"),
        Index(
            "uq_transactions_provider_id",
            "payment_provider",
            "provider_transaction_id",
            unique=True,
            postgresql_where=text("provider_transaction_id IS NOT NULL"),
        ),
        # -- added by 0011: one charge per subscription and billing period, and refunds
        # pointing at what they give back.
        Index(
            "uq_transactions_subscription_period",
            "subscription_id",
            "period_key",
            unique=True,
            postgresql_where=text("period_key IS NOT NULL"),
        ),
        Index(
            "ix_transactions_refund_of", "refund_of", postgresql_where=text("refund_of IS NOT NULL")
        ),
        # -- added by 0015: each filter of the ledger lists, in their keyset order.
        Index("ix_transactions_created_at_id", "created_at", "id"),
        Index("ix_transactions_user_id_created_at_id", "user_id", "created_at", "id"),
        Index("ix_transactions_type_created_at_id", "type", "created_at", "id"),
        Index("ix_transactions_status_created_at_id", "status", "created_at", "id"),
        Index(
            "ix_transactions_subscription_id_created_at_id", "subscription_id", "created_at", "id"
        ),
        # -- added by 0016: the incremental ledger check reads the entries settled since its
        # last horizon, and nothing else.
        Index(
            "ix_transactions_completed_processed_at",
            "processed_at",
            postgresql_where=text("status = 'completed'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id"))
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid(), ForeignKey("subscriptions.id")
    )
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    currency: Mapped[str | None] = mapped_column(String(3), server_default=text("'USD'"))
    type: Mapped[str] = mapped_column(String(50))
    status: Mapped[str | None] = mapped_column(String(50), server_default=text("'pending'"))
    payment_method: Mapped[str | None] = mapped_column(String(50))
    payment_provider: Mapped[str | None] = mapped_column(String(50))
    provider_transaction_id: Mapped[str | None] = mapped_column(String(255))
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime | None] = created_at()
    # -- added by 0011
    period_key: Mapped[str | None] = mapped_column(String(64))
    refund_of: Mapped[uuid.UUID | None] = mapped_column(Uuid(), ForeignKey("transactions.id"))


class LedgerCheckpoint(Base):
    """How far the ledger check has got (one row): every completed entry processed at or before
    ``horizon`` is summed, per user, in ``ledger_checkpoint_sums``; the next incremental check
    reads only the entries processed after it. ``full_at``: the last check that summed the
    whole ledger again."""

    __tablename__ = "ledger_checkpoints"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    horizon: Mapped[datetime] = mapped_column(DateTime())
    checked_at: Mapped[datetime] = mapped_column(DateTime())
    full_at: Mapped[datetime] = mapped_column(DateTime())


class LedgerCheckpointSum(Base):
    """A user's completed entries processed at or before the checkpoint's horizon, summed with
    their direction (no row: zero)."""

    __tablename__ = "ledger_checkpoint_sums"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    settled: Mapped[Decimal] = mapped_column(Numeric())
