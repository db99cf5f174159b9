"""Site settings: typed key/value configuration editable by admins (seed table ``settings``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from vmcloud.core.clock import utcnow
from vmcloud.db.base import Base


class Setting(Base):
    __tablename__ = "settings"
    __audit__ = "setting"
    __table_args__ = (
        CheckConstraint("type IN ('string', 'number', 'boolean', 'json')", name="type"),
    )

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(50))
    category: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    is_public: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    updated_at: Mapped[datetime | None] = mapped_column(
        DateTime(), server_default=text("CURRENT_TIMESTAMP"), default=utcnow, onupdate=utcnow
    )
