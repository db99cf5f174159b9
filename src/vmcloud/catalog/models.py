"""Catalogue: the VM plans on sale (seed table ``products``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from vmcloud.db.base import Base, created_at, updated_at, uuid_pk


class Product(Base):
    __tablename__ = "products"
    __audit__ = "product"
    __table_args__ = (
        Index("idx_products_slug", "slug"),
        Index("idx_products_status", "status"),
        Index("idx_products_category", "category"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(100))
    specs_json: Mapped[dict[str, Any]] = mapped_column(JSONB)
    pricing_json: Mapped[dict[str, Any]] = mapped_column(JSONB)
    features_json: Mapped[list[str] | None] = mapped_column(JSONB)
    status: Mapped[str | None] = mapped_column(String(50), server_default=text("'active'"))
    sort_order: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime | None] = created_at()
    updated_at: Mapped[datetime | None] = updated_at()
