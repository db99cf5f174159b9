"""Logins: access tokens, refresh-token rotation with reuse detection, logout.

A login starts a *family* of refresh tokens. Each refresh revokes the presented token, links it
to its successor and issues the successor. Presenting a token that was already rotated means
two parties hold the same family (a stolen token): the whole family is revoked, so both the
thief and the user must log in again.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.accounts import limits, two_factor
from vmcloud.accounts.errors import (
    AccountInactiveError,
    InvalidCredentialsError,
    InvalidTokenError,
)
from vmcloud.accounts.models import RefreshToken, User
from vmcloud.accounts.passwords import (
    burn_verification_time,
    hash_password,
    needs_rehash,
    verify_password,
)
from vmcloud.accounts.revocation import revoke_family
from vmcloud.accounts.schemas import TokenPair
from vmcloud.accounts.service import find_by_login
from vmcloud.accounts.tokens import hash_secret, issue_access_token, new_secret
from vmcloud.audit import service as audit
from vmcloud.config import Settings
from vmcloud.core.clock import utcnow
from vmcloud.core.net import RequestMeta
from vmcloud.core.ratelimit import RateLimiter


def _issue(
    *, db: Session, settings: Settings, user: User, family_id: uuid.UUID, meta: RequestMeta
) -> tuple[TokenPair, RefreshToken]:
    raw, digest = new_secret()
    row = RefreshToken(
        user_id=user.id,
        token=digest,
        family_id=family_id,
        expires_at=utcnow() + timedelta(days=settings.refresh_token_days),
        ip_address=meta.ip,
        user_agent=(meta.user_agent or "")[:1000] or None,
    )
    db.add(row)
    db.flush()
    access, lifetime = issue_access_token(
        settings=settings, user_id=user.id, role=user.role, session_id=family_id
    )
    return TokenPair(access_token=access, refresh_token=raw, expires_in=lifetime), row


def login(
    *,
    db: Session,
    limiter: RateLimiter,
    settings: Settings,
    login: str,
    password: str,
    totp_code: str | None,
    meta: RequestMeta,
) -> TokenPair:
    limiter.hit_address(limits.LOGIN_PER_IP, meta.ip)
    user = find_by_login(db=db, login=login)
    # One budget per account, whether it is named by email or by username.
    limiter.hit(limits.LOGIN_PER_ACCOUNT, str(user.id) if user else login.strip().lower())
    if user is None:
        burn_verification_time(password)
        audit.record(
            db=db, action="user.login_failed", actor_id=None, meta=meta,
            extra={"reason": "unknown_account"},
        )  # fmt: skip
        raise InvalidCredentialsError()
    if not verify_password(user.password_hash, password):
        _failed(db, user, meta, "wrong_password")
        raise InvalidCredentialsError()
    _check_active(db, user, meta)
    _check_second_factor(db=db, limiter=limiter, settings=settings, user=user, code=totp_code)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return _start(db=db, settings=settings, user=user, meta=meta)


def password_fingerprint(user: User) -> str:
    """A short digest of the account's password hash: a half-done login (password checked,
    second factor pending) names it, so changing or resetting the password ends it."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


def login_second_factor(
    *,
    db: Session,
    limiter: RateLimiter,
    settings: Settings,
    user_id: uuid.UUID,
    fingerprint: str,
    code: str,
    meta: RequestMeta,
) -> TokenPair:
    """The second step of a login whose password was already checked (the panel keeps the
    pending account in a short-lived signed cookie): a TOTP or recovery code, with the same
    checks, limits and audit as a one-step login."""
    limiter.hit_address(limits.LOGIN_PER_IP, meta.ip)
    user = db.get(User, user_id)
    if (
        user is None
        or not user.two_factor_enabled
        or not hmac.compare_digest(password_fingerprint(user), fingerprint)
    ):
        raise InvalidTokenError("This login has expired; enter your password again.")
    _check_active(db, user, meta)
    _check_second_factor(db=db, limiter=limiter, settings=settings, user=user, code=code)
    return _start(db=db, settings=settings, user=user, meta=meta)


def _check_active(db: Session, user: User, meta: RequestMeta) -> None:
    if user.status != "active":
        _failed(db, user, meta, f"account_{user.status}")
        raise AccountInactiveError(f"This account is {user.status}; contact support.", commit=True)


def _check_second_factor(
    *, db: Session, limiter: RateLimiter, settings: Settings, user: User, code: str | None
) -> None:
    if user.two_factor_enabled:
        two_factor.check_login_code(db=db, limiter=limiter, settings=settings, user=user, code=code)


def _start(*, db: Session, settings: Settings, user: User, meta: RequestMeta) -> TokenPair:
    """A new login (refresh-token family) for an account that passed every check."""
    user.last_login_at = utcnow()
    pair, row = _issue(db=db, settings=settings, user=user, family_id=uuid.uuid4(), meta=meta)
    audit.label(
        user,
        "user.login",
        by_self=True,
        extra={"session_id": str(row.family_id), "two_factor": bool(user.two_factor_enabled)},
    )
    return pair


def _failed(db: Session, user: User, meta: RequestMeta, reason: str) -> None:
    audit.record(
        db=db,
        action="user.login_failed",
        actor_id=user.id,
        meta=meta,
        entity_type="user",
        entity_id=user.id,
        extra={"reason": reason},
    )


def refresh(
    *, db: Session, limiter: RateLimiter, settings: Settings, raw: str, meta: RequestMeta
) -> TokenPair:
    limiter.hit_address(limits.REFRESH_PER_IP, meta.ip)
    row = db.scalar(
        select(RefreshToken).where(RefreshToken.token == hash_secret(raw)).with_for_update()
    )
    now = utcnow()
    if row is None:
        raise InvalidTokenError("The refresh token is not valid.")
    if row.revoked_at is not None:
        if row.replaced_by_id is not None:
            revoked = revoke_family(db=db, family_id=row.family_id)
            audit.record(
                db=db,
                action="user.refresh_reuse",
                actor_id=row.user_id,
                meta=meta,
                entity_type="user",
                entity_id=row.user_id,
                extra={"session_id": str(row.family_id), "tokens_revoked": revoked},
            )
            raise InvalidTokenError(
                "This refresh token was already used; the session has been signed out.",
                commit=True,
            )
        raise InvalidTokenError("The refresh token has been revoked.")
    if row.expires_at <= now:
        raise InvalidTokenError("The refresh token has expired.")
    limiter.hit(limits.REFRESH_PER_ACCOUNT, str(row.user_id))
    user = db.get(User, row.user_id)
    if user is None or user.status != "active":
        revoke_family(db=db, family_id=row.family_id)
        raise InvalidTokenError("The account is not active.", commit=True)
    pair, successor = _issue(
        db=db, settings=settings, user=user, family_id=row.family_id, meta=meta
    )
    row.revoked_at = now
    row.replaced_by_id = successor.id
    return pair


def logout(*, db: Session, user: User, raw: str, meta: RequestMeta) -> None:
    """End the login the refresh token belongs to. Unknown or foreign tokens change nothing
    (and say nothing)."""
    row = db.scalar(select(RefreshToken).where(RefreshToken.token == hash_secret(raw)))
    revoked = 0
    if row is not None and row.user_id == user.id:
        revoked = revoke_family(db=db, family_id=row.family_id)
    audit.record(
        db=db,
        action="user.logout",
        actor_id=user.id,
        meta=meta,
        entity_type="user",
        entity_id=user.id,
        extra={"tokens_revoked": revoked},
    )


def find_live_login(*, db: Session, raw: str) -> tuple[User, RefreshToken] | None:
    """The account and login a browser session names by one of its refresh tokens (the panel
    keeps the secret in its session cookie), or None when that token was revoked or rotated,
    has expired, or the account is not active: so logging out, "log out everywhere", a
    password reset and a suspension end the browser session too."""
    row = db.execute(
        select(User, RefreshToken)
        .join(RefreshToken, RefreshToken.user_id == User.id)
        .where(
            RefreshToken.token == hash_secret(raw),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > utcnow(),
        )
    ).one_or_none()
    if row is None or row[0].status != "active":
        return None
    return row[0], row[1]
