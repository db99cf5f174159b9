"""Staff operations on user accounts."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from vmcloud.accounts import revocation
from vmcloud.accounts.models import USER_ROW_LOCK, User
from vmcloud.accounts.schemas import UserAdminUpdate
from vmcloud.audit import service as audit
from vmcloud.core.errors import ConflictError, InvalidInputError, NotFoundError
from vmcloud.core.pagination import PageParams, paginate

LOCKED_OUT = ("suspended", "banned", "closed")


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def list_users(
    *,
    db: Session,
    params: PageParams,
    q: str | None = None,
    role: str | None = None,
    status: str | None = None,
) -> tuple[list[User], str | None]:
    stmt = select(User)
    if q:
        pattern = _like(q)
        stmt = stmt.where(
            or_(
                func.lower(User.email).like(pattern, escape="\\"),
                func.lower(User.username).like(pattern, escape="\\"),
            )
        )
    if role:
        stmt = stmt.where(User.role == role)
    if status:
        stmt = stmt.where(User.status == status)
    return paginate(db, stmt, order_by=(User.created_at, User.id), params=params)


def get_user(*, db: Session, user_id: uuid.UUID, lock: bool = False) -> User:
    user = db.get(User, user_id, with_for_update=USER_ROW_LOCK if lock else None)
    if user is None:
        raise NotFoundError("There is no such user.")
    return user


def emails_of(*, db: Session, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The email addresses of users, for staff lists that name each row's customer."""
    wanted = set(user_ids)
    if not wanted:
        return {}
    rows = db.execute(select(User.id, User.email).where(User.id.in_(wanted)))
    return {row.id: row.email for row in rows}


def update_user(*, db: Session, user_id: uuid.UUID, body: UserAdminUpdate) -> User:
    """Change a user's role, status or verification. Locking a user out (suspend, ban, close)
    ends all their logins and personal API tokens at once; the last active admin cannot be
    demoted or locked out."""
    changes = body.model_dump(include=body.model_fields_set)
    nulls = [field for field, value in changes.items() if value is None]
    if nulls:
        raise InvalidInputError(
            "Fields may be left out, but not set to null.",
            errors=[{"field": field, "message": "may not be null"} for field in nulls],
        )
    user = get_user(db=db, user_id=user_id, lock=True)
    loses_admin = (
        user.role == "admin"
        and user.status == "active"
        and (changes.get("role", "admin") != "admin" or changes.get("status", "active") != "active")
    )
    if loses_admin:
        # Lock every active admin row so two admins cannot demote each other at once.
        admins = db.scalars(
            select(User.id)
            .where(User.role == "admin", User.status == "active")
            .with_for_update(key_share=True)
        ).all()
        if len(admins) <= 1:
            raise ConflictError(
                "This is the last active admin; promote another admin first.",
                type="last-admin",
                title="Last active admin",
            )
    new_status = changes.get("status")
    if new_status and new_status != user.status:
        audit.label(user, f"user.{_verb(new_status)}")
    for field, value in changes.items():
        setattr(user, field, value)
    db.flush()
    if new_status in LOCKED_OUT:
        # Logins and personal tokens alike: reactivating the user brings neither back.
        revocation.revoke_all(db=db, user_id=user.id)
        revocation.revoke_api_tokens(db=db, user_id=user.id)
    return user


def _verb(status: str) -> str:
    return {"active": "reactivate", "suspended": "suspend", "banned": "ban", "closed": "close"}[
        status
    ]


def revoke_sessions(*, db: Session, user_id: uuid.UUID) -> tuple[int, int]:
    """Log the user out everywhere: every login ends (API and panel sessions alike, as their
    refresh-token families are revoked) and so does every personal API token. The account
    stays as it is; the user may log in again. Returns (logins, tokens) ended."""
    user = get_user(db=db, user_id=user_id, lock=True)
    logins = revocation.revoke_all(db=db, user_id=user.id)
    tokens = revocation.revoke_api_tokens(db=db, user_id=user.id)
    # "credentials", not "tokens": the audit trail redacts any key that names a token.
    audit.record(
        db=db,
        action="user.sessions_revoke",
        entity_type="user",
        entity_id=user.id,
        extra={"sessions_revoked": logins, "api_credentials_revoked": tokens},
    )
    return logins, tokens
