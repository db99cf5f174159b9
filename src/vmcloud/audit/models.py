"""Audit trail (seed table ``audit_logs``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from vmcloud.db.base import Base, created_at, uuid_pk
from vmcloud.db.types import Inet


class AuditLog(Base):
    __tablename__ = "audit_logs"
    __table_args__ = (
        Index("idx_audit_logs_user_id", "user_id"),
        Index("idx_audit_logs_entity", "entity_type", "entity_id"),
        Index("idx_audit_logs_timestamp", "timestamp"),
        # -- added by 0015: each filter of the admin list, in the list's keyset order
        # (newest first, read backwards), so a page is one index range whatever the table's size.
        Index("ix_audit_logs_timestamp_id", "timestamp", "id"),
        Index("ix_audit_logs_user_id_timestamp_id", "user_id", "timestamp", "id"),
        Index("ix_audit_logs_action_timestamp_id", "action", "timestamp", "id"),
        Index("ix_audit_logs_entity_type_timestamp_id", "entity_type", "timestamp", "id"),
        Index("ix_audit_logs_entity_id_timestamp_id", "entity_id", "timestamp", "id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(255))
    entity_type: Mapped[str | None] = mapped_column(String(100))
    entity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    old_values: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    new_values: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    ip_address: Mapped[str | None] = mapped_column(Inet())
    user_agent: Mapped[str | None] = mapped_column(Text)
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    timestamp: Mapped[datetime | None] = created_at()
