"""A user's live logins (refresh-token families): listing them and ending one or all others.

A login is live while one of its refresh tokens is unrevoked and unexpired; rotation keeps
exactly one such token per family, the newest, so its address and user agent are those of the
last renewal and its creation time is when the login was last used to get new tokens (a panel
session never renews: for it, that is the time of logging in).
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from vmcloud.accounts.models import RefreshToken, User
from vmcloud.accounts.revocation import revoke_all, revoke_family
from vmcloud.accounts.schemas import SessionRead
from vmcloud.audit import service as audit
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import NotFoundError
from vmcloud.core.net import RequestMeta


def list_logins(*, db: Session, user: User, current: uuid.UUID | None) -> list[SessionRead]:
    """The user's live logins, most recently used first; ``current`` marks the caller's."""
    family = aliased(RefreshToken)
    started = (
        select(func.min(family.created_at))
        .where(family.family_id == RefreshToken.family_id)
        .scalar_subquery()
    )
    rows = db.execute(
        select(RefreshToken, started.label("started"))
        .where(
            RefreshToken.user_id == user.id,
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > utcnow(),
        )
        .order_by(RefreshToken.created_at.desc(), RefreshToken.id)
    ).all()
    seen: set[uuid.UUID] = set()
    logins: list[SessionRead] = []
    for token, first in rows:
        if token.family_id in seen:
            continue
        seen.add(token.family_id)
        logins.append(
            SessionRead(
                id=token.family_id,
                created_at=first,
                last_used_at=token.created_at,
                ip_address=str(token.ip_address) if token.ip_address else None,
                user_agent=token.user_agent,
                current=token.family_id == current,
            )
        )
    return logins


def end_login(*, db: Session, user: User, session_id: uuid.UUID, meta: RequestMeta) -> None:
    """End one of the user's own live logins; any other id (another user's, ended, unknown)
    is 404."""
    owned = db.scalar(
        select(RefreshToken.id)
        .where(
            RefreshToken.family_id == session_id,
            RefreshToken.user_id == user.id,
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > utcnow(),
        )
        .limit(1)
    )
    if owned is None:
        raise NotFoundError("No such session.")
    revoked = revoke_family(db=db, family_id=session_id)
    _audit(db, user, meta, {"session_id": str(session_id), "sessions_revoked": min(revoked, 1)})


def end_other_logins(*, db: Session, user: User, keep_session: uuid.UUID, meta: RequestMeta) -> int:
    """End every live login of the user but ``keep_session``; returns how many tokens ended."""
    revoked = revoke_all(db=db, user_id=user.id, except_family=keep_session)
    _audit(db, user, meta, {"kept_session_id": str(keep_session), "sessions_revoked": revoked})
    return revoked


def _audit(db: Session, user: User, meta: RequestMeta, extra: dict[str, object]) -> None:
    audit.record(
        db=db,
        action="user.logout",
        actor_id=user.id,
        meta=meta,
        entity_type="user",
        entity_id=user.id,
        extra=extra,
    )
