"""Declarative base shared by every domain's models.

The naming convention reproduces PostgreSQL's own implicit names (``users_pkey``,
``users_email_key``, ``instances_user_id_fkey``), so the tables the migrations build carry exactly
the constraint names the seed schema produces.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, MetaData, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import Uuid

from vmcloud.core.clock import utcnow

NAMING_CONVENTION = {
    "pk": "%(table_name)s_pkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def uuid_pk() -> Mapped[uuid.UUID]:
    """``id UUID PRIMARY KEY DEFAULT gen_random_uuid()``; the ORM also fills it client-side so
    an object has its id before the flush."""
    return mapped_column(
        Uuid(), primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )


def created_at() -> Mapped[datetime | None]:
    """``TIMESTAMP DEFAULT CURRENT_TIMESTAMP`` (naive UTC; see ``core.clock``)."""
    return mapped_column(DateTime(), server_default=text("CURRENT_TIMESTAMP"), default=utcnow)


def updated_at() -> Mapped[datetime | None]:
    return mapped_column(
        DateTime(), server_default=text("CURRENT_TIMESTAMP"), default=utcnow, onupdate=utcnow
    )
