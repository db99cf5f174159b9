"""Ending logins: revoking refresh-token families, and personal API tokens when an account is
recovered."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, Exists, exists, literal_column, select, update
from sqlalchemy.orm import Session

from vmcloud.accounts.models import ApiToken, RefreshToken
from vmcloud.core.clock import utcnow


def revoke_family(*, db: Session, family_id: uuid.UUID) -> int:
    result = db.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def revoke_all(*, db: Session, user_id: uuid.UUID, except_family: uuid.UUID | None = None) -> int:
    stmt = update(RefreshToken).where(
        RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
    )
    if except_family is not None:
        stmt = stmt.where(RefreshToken.family_id != except_family)
    result = db.execute(stmt.values(revoked_at=utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def revoke_api_tokens(*, db: Session, user_id: uuid.UUID) -> int:
    """Revoke every live personal API token of the user: for a password reset and an admin
    locking the user out, not for a voluntary password change (see ``docs/security.md``)."""
    result = db.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def live_session(
    family_id: uuid.UUID | ColumnElement[uuid.UUID],
    now: datetime | ColumnElement[datetime] | None = None,
) -> Exists:
    """``EXISTS``: the login ``family_id`` still has a usable refresh token (at ``now``, by
    default the present). Access tokens of a login that was logged out, reset or caught
    reusing a token stop working with it."""
    return exists(
        select(literal_column("1")).where(
            RefreshToken.family_id == family_id,
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > (utcnow() if now is None else now),
        )
    )


def session_is_live(*, db: Session, family_id: uuid.UUID) -> bool:
    """Whether the login ``family_id`` is live (:func:`live_session`)."""
    return bool(db.scalar(select(live_session(family_id))))
