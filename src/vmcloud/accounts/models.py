"""Accounts: users and the tokens that authenticate them.

The seed tables are as the seed writes them; migration 0003 adds (never changes) the columns
below the ``-- added`` comments, the checks and the indexes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from vmcloud.db.base import Base, created_at, updated_at, uuid_pk
from vmcloud.db.types import Inet

ROLES = ("customer", "support", "admin")
STAFF_ROLES = ("support", "admin")


class User(Base):
    __tablename__ = "users"
    __audit__ = "user"
    __audit_ignore__ = ("totp_last_step",)
    __table_args__ = (
        Index("idx_users_email", "email"),
        Index("idx_users_username", "username"),
        Index("idx_users_status", "status"),
        Index("idx_users_role", "role"),
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
        Index("uq_users_username_lower", func.lower(text("username")), unique=True),
        CheckConstraint("role IN ('customer', 'support', 'admin')", name="role"),
        CheckConstraint("status IN ('active', 'suspended', 'banned', 'closed')", name="status"),
        CheckConstraint("balance >= 0", name="balance_not_negative"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(255), unique=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(50), server_default=text("'customer'"))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(50))
    balance: Mapped[Decimal | None] = mapped_column(Numeric(10, 2), server_default=text("0.00"))
    status: Mapped[str | None] = mapped_column(String(50), server_default=text("'active'"))
    email_verified: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    two_factor_enabled: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    two_factor_secret: Mapped[str | None] = mapped_column(String(255))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime | None] = created_at()
    updated_at: Mapped[datetime | None] = updated_at()
    # -- added: the time step of the last TOTP code accepted (a code is good once).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)


class RefreshToken(Base):
    """One row per issued refresh token. ``token`` holds the SHA-256 of the secret, never the
    secret. All tokens of one login share ``family_id``; a rotated token points at its
    successor, so presenting it again is recognisable as reuse."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_user_id", "user_id"),
        Index("ix_refresh_tokens_family_id", "family_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id"))
    token: Mapped[str] = mapped_column(String(500), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime | None] = created_at()
    # -- added
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid(), ForeignKey("refresh_tokens.id")
    )
    ip_address: Mapped[str | None] = mapped_column(Inet())
    user_agent: Mapped[str | None] = mapped_column(Text)


class EmailVerification(Base):
    __tablename__ = "email_verifications"
    __table_args__ = (Index("ix_email_verifications_user_id", "user_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id"))
    token: Mapped[str] = mapped_column(String(255), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime())
    verified_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime | None] = created_at()


class PasswordReset(Base):
    __tablename__ = "password_resets"
    __table_args__ = (Index("ix_password_resets_user_id", "user_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id"))
    token: Mapped[str] = mapped_column(String(255), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime())
    used_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime | None] = created_at()


class RecoveryCode(Base):
    """A single-use 2FA recovery code, stored as the SHA-256 of the code (80 random bits)."""

    __tablename__ = "two_factor_recovery_codes"
    __table_args__ = (Index("ix_two_factor_recovery_codes_user_id", "user_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime | None] = created_at()


# A user's row is locked FOR NO KEY UPDATE, never FOR UPDATE. It serialises changes to one
# user just the same, but does not wait for the KEY SHARE lock that every insert referencing
# the user takes (an idempotency key, a ledger entry, an instance): with FOR UPDATE, two
# requests of one customer that had each inserted such a row deadlocked on each other.
# (SQLAlchemy spells it key_share=True.)
USER_ROW_LOCK: dict[str, bool] = {"key_share": True}


class SshKey(Base):
    """A public key a user saved to put into new instances (``accounts/ssh_keys.py``)."""

    __tablename__ = "ssh_keys"
    __audit__ = "ssh_key"
    __table_args__ = (UniqueConstraint("user_id", "fingerprint"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(100))  # "SHA256:…", as ssh-keygen -l
    created_at: Mapped[datetime | None] = created_at()


class ApiToken(Base):
    """A personal API token (``accounts/api_tokens.py``). ``token_hash`` is the SHA-256 of the
    secret, never the secret; ``prefix`` is its first characters, shown to recognise it."""

    __tablename__ = "api_tokens"
    __audit__ = "api_token"
    __audit_ignore__ = ("last_used_at",)
    __table_args__ = (Index("ix_api_tokens_user_id", "user_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime | None] = created_at()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime())
