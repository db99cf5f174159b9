"""Compute: customers' virtual machines (seed table ``instances``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from vmcloud.db.base import Base, created_at, uuid_pk
from vmcloud.db.types import Inet


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (
        Index("idx_instances_user_id", "user_id"),
        Index("idx_instances_product_id", "product_id"),
        Index("idx_instances_status", "status"),
        Index("idx_instances_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id"))
    product_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("products.id"))
    name: Mapped[str] = mapped_column(String(255))
    hostname: Mapped[str | None] = mapped_column(String(255))
    ip_address: Mapped[str | None] = mapped_column(Inet())
    status: Mapped[str | None] = mapped_column(String(50), server_default=text("'pending'"))
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    resources_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime | None] = created_at()
    started_at: Mapped[datetime | None] = mapped_column(DateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime())
