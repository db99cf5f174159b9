"""Catalogue: the VM plans on sale (seed table ``products``), regions and OS images."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, Integer, String, Text, text
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
        CheckConstraint("status IN ('active', 'hidden', 'archived')", name="status"),
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


class Region(Base):
    """Where VMs can run: a group of hypervisor nodes sharing IP pools."""

    __tablename__ = "regions"
    __audit__ = "region"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'disabled')", name="status"),
        Index("ix_regions_status", "status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(50), server_default=text("'active'"))
    sort_order: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime | None] = created_at()
    updated_at: Mapped[datetime | None] = updated_at()


class Image(Base):
    """An operating system image customers can install.

    ``boot_json`` is what a node needs to boot it, by kind:
    ``{"kind": "kernel", "kernel": path, "initrd": path, "cmdline": str}`` for direct kernel
    boot, or ``{"kind": "disk", "format": "qcow2", "path": path, "cloud_init": bool}`` for a
    disk image used as the base of each instance's copy-on-write disk.
    """

    __tablename__ = "images"
    __audit__ = "image"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'deprecated', 'disabled')", name="status"),
        CheckConstraint("min_disk_gb > 0", name="min_disk_gb"),
        Index("ix_images_status", "status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    distro: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    min_disk_gb: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    status: Mapped[str] = mapped_column(String(50), server_default=text("'active'"))
    boot_json: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    sort_order: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime | None] = created_at()
    updated_at: Mapped[datetime | None] = updated_at()
