"""Support: tickets and their messages (seed tables)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from vmcloud.db.base import Base, created_at, updated_at, uuid_pk

# The staff queue's order: most urgent first (then oldest first).
_RANK = "CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END"


class SupportTicket(Base):
    __tablename__ = "support_tickets"
    __audit__ = "ticket"
    __audit_ignore__ = ("priority_rank", "updated_at")
    __table_args__ = (
        Index("idx_support_tickets_user_id", "user_id"),
        Index("idx_support_tickets_assigned_to", "assigned_to"),
        Index("idx_support_tickets_status", "status"),
        Index("idx_support_tickets_priority", "priority"),
        # -- added by 0012
        CheckConstraint(
            "status IN ('open', 'in_progress', 'waiting_customer', 'resolved', 'closed')",
            name="status",
        ),
        CheckConstraint("priority IN ('low', 'normal', 'high', 'urgent')", name="priority"),
        CheckConstraint("satisfaction_rating BETWEEN 1 AND 5", name="rating"),
        Index("ix_support_tickets_queue", "priority_rank", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id"))
    assigned_to: Mapped[uuid.UUID | None] = mapped_column(Uuid(), ForeignKey("users.id"))
    instance_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), ForeignKey("instances.id"))
    subject: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(100))
    priority: Mapped[str | None] = mapped_column(String(50), server_default=text("'normal'"))
    status: Mapped[str | None] = mapped_column(String(50), server_default=text("'open'"))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime())
    satisfaction_rating: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime | None] = created_at()
    updated_at: Mapped[datetime | None] = updated_at()
    # -- added by 0012
    priority_rank: Mapped[int] = mapped_column(SmallInteger, Computed(_RANK, persisted=True))


class TicketMessage(Base):
    """One message of a ticket. ``is_internal``: a staff note, never shown to the customer.
    ``attachments_json``: ``[{id, name, size, content_type, sha256, key}]`` (files live in the
    attachment storage, not in the database)."""

    __tablename__ = "ticket_messages"
    __audit__ = "ticket_message"
    __table_args__ = (
        # -- added by 0012: a ticket's conversation in order.
        Index("ix_ticket_messages_ticket_created", "ticket_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("support_tickets.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id"))
    message: Mapped[str] = mapped_column(Text)
    attachments_json: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    is_internal: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime | None] = created_at()
