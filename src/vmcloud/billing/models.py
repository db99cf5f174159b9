"""Billing: subscriptions and the ledger (seed tables ``subscriptions`` and ``transactions``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Numeric, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from vmcloud.db.base import Base, created_at, updated_at, uuid_pk


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("idx_subscriptions_user_id", "user_id"),
        Index("idx_subscriptions_instance_id", "instance_id"),
        Index("idx_subscriptions_status", "status"),
        Index("idx_subscriptions_period_end", "period_end"),
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
