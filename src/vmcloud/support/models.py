"""Support: tickets and their messages (seed tables)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from vmcloud.db.base import Base, created_at, updated_at, uuid_pk


class SupportTicket(Base):
    __tablename__ = "support_tickets"
    __table_args__ = (
        Index("idx_support_tickets_user_id", "user_id"),
        Index("idx_support_tickets_assigned_to", "assigned_to"),
        Index("idx_support_tickets_status", "status"),
        Index("idx_support_tickets_priority", "priority"),
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


class TicketMessage(Base):
    __tablename__ = "ticket_messages"

    id: Mapped[uuid.UUID] = uuid_pk()
    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("support_tickets.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id"))
    message: Mapped[str] = mapped_column(Text)
    attachments_json: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    is_internal: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime | None] = created_at()
