"""Account operations: registration, email verification, password reset, profile."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from vmcloud.accounts import emails, limits, revocation
from vmcloud.accounts.errors import InvalidTokenError, WrongPasswordError
from vmcloud.accounts.models import (
    USER_ROW_LOCK,
    EmailVerification,
    PasswordReset,
    RefreshToken,
    User,
)
from vmcloud.accounts.passwords import (
    generate_password,
    hash_password,
    verify_password,
)
from vmcloud.accounts.schemas import MeUpdate, RegisterRequest
from vmcloud.accounts.tokens import hash_secret, new_secret
from vmcloud.accounts.validation import check_username, normalise_email
from vmcloud.audit import service as audit
from vmcloud.config import Settings
from vmcloud.core import jobs
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ConflictError, ForbiddenError, InvalidInputError
from vmcloud.core.mail import Mailer
from vmcloud.core.net import RequestMeta
from vmcloud.core.ratelimit import RateLimiter
from vmcloud.db.session import flush_or_raise
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import REGISTRATION_ENABLED, SITE_NAME

VERIFICATION_TTL = timedelta(hours=24)
RESET_TTL = timedelta(hours=1)
_FIRST_ADMIN_LOCK = 0x766D61646D696E  # serialises first-admin creation across processes


class RegistrationClosedError(ForbiddenError):
    type = "registration-disabled"
    title = "Registration is closed"


def email_lookup_key(email: str) -> str:
    """An address as stored: normalised like at registration when it parses, else as typed."""
    try:
        return normalise_email(email)
    except InvalidInputError:
        return email.strip().lower()


def find_by_login(*, db: Session, login: str) -> User | None:
    """A user by email or username, both compared case-insensitively."""
    value = login.strip().lower()
    return db.scalar(
        select(User).where((func.lower(User.email) == value) | (func.lower(User.username) == value))
    )


def usernames_of(*, db: Session, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The usernames of ``user_ids``, in one query (a staff list names each row's owner)."""
    if not user_ids:
        return {}
    rows = db.execute(select(User.id, User.username).where(User.id.in_(user_ids)))
    return {row.id: row.username for row in rows}


def _ensure_unique(db: Session, email: str, username: str) -> None:
    clash = db.scalar(
        select(User.email).where(
            (func.lower(User.email) == email) | (func.lower(User.username) == username.lower())
        )
    )
    if clash is not None:
        field = "email" if clash.lower() == email else "username"
        raise ConflictError(
            f"This {field} is already registered.",
            errors=[{"field": field, "message": "already registered"}],
        )


def create_admin(*, db: Session, email: str, username: str) -> tuple[User, str]:
    """Create an active, verified admin with a generated password; returns it once."""
    email = normalise_email(email)
    username = check_username(username)
    _ensure_unique(db, email, username)
    password = generate_password()
    user = User(
        email=email,
        username=username,
        password_hash=hash_password(password),
        role="admin",
        status="active",
        email_verified=True,
    )
    db.add(user)
    db.flush()
    return user, password


def ensure_first_admin(*, db: Session, email: str, username: str) -> tuple[User, str] | None:
    """Create the first admin when the platform has none; ``None`` when one exists already."""
    db.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _FIRST_ADMIN_LOCK})
    if db.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None:
        return None
    return create_admin(db=db, email=email, username=username)


# -- registration and email verification ---------------------------------------------------


def register(
    *, db: Session, limiter: RateLimiter, body: RegisterRequest, meta: RequestMeta
) -> User:
    limiter.hit_address(limits.REGISTER_PER_IP, meta.ip)
    if not site_settings.get(db, REGISTRATION_ENABLED):
        raise RegistrationClosedError("New accounts cannot be created at the moment.")
    email = normalise_email(body.email)
    limiter.hit(limits.REGISTER_PER_ACCOUNT, email)
    username = check_username(body.username)
    _ensure_unique(db, email, username)
    user = User(
        email=email,
        username=username,
        password_hash=hash_password(body.password),
        role="customer",
        status="active",
        email_verified=False,
        first_name=body.first_name,
        last_name=body.last_name,
        phone=body.phone,
    )
    audit.label(user, "user.register", by_self=True)
    db.add(user)
    # A concurrent registration may have won the race.
    flush_or_raise(db, ConflictError("This email or username is already registered."))
    _queue_verification(db, user)
    return user


def _queue_verification(db: Session, user: User) -> None:
    jobs.defer(db, "accounts.send_verification_email", user_id=str(user.id))


def resend_verification(
    *, db: Session, limiter: RateLimiter, email: str, meta: RequestMeta
) -> None:
    """Queue a new verification email if the account exists and is unverified; answer the
    same either way."""
    limiter.hit_address(limits.RESEND_PER_IP, meta.ip)
    key = email_lookup_key(email)
    limiter.hit(limits.RESEND_PER_ACCOUNT, key)
    user = db.scalar(select(User).where(func.lower(User.email) == key))
    if user is not None and not user.email_verified and user.status == "active":
        _queue_verification(db, user)


def _mint(
    db: Session, model: type[EmailVerification] | type[PasswordReset], user: User, ttl: timedelta
) -> str:
    """A new single-use token for ``user``: its hash is stored, the token itself returned to be
    mailed (and never stored)."""
    raw, digest = new_secret()
    db.add(model(user_id=user.id, token=digest, expires_at=utcnow() + ttl))
    db.flush()
    return raw


def send_verification_email(
    *, db: Session, settings: Settings, mailer: Mailer, user_id: uuid.UUID
) -> None:
    """Job body: mint a verification token, store its hash, mail the token. The token exists
    in clear only in the email, never in the database or the job's arguments."""
    user = db.get(User, user_id)
    if user is None or user.email_verified:
        return
    raw = _mint(db, EmailVerification, user, VERIFICATION_TTL)
    site = site_settings.get(db, SITE_NAME)
    mailer.send(
        emails.verification(
            to=user.email,
            site=site,
            link=_link(settings, "/verify-email", raw),
            token=raw,
            hours=int(VERIFICATION_TTL.total_seconds() // 3600),
        )
    )


def verify_email(*, db: Session, limiter: RateLimiter, token: str, meta: RequestMeta) -> User:
    limiter.hit_address(limits.VERIFY_PER_IP, meta.ip)
    record = db.scalar(
        select(EmailVerification)
        .where(EmailVerification.token == hash_secret(token))
        .with_for_update()
    )
    now = utcnow()
    if record is None or record.verified_at is not None or record.expires_at <= now:
        raise InvalidTokenError(
            "This verification link is invalid, used or expired; ask for a new one.", status=400
        )
    user = db.get(User, record.user_id)
    assert user is not None
    record.verified_at = now
    user.email_verified = True
    audit.label(user, "user.verify_email", by_self=True)
    return user


# -- password reset ------------------------------------------------------------------------


def request_password_reset(
    *, db: Session, limiter: RateLimiter, email: str, meta: RequestMeta
) -> None:
    limiter.hit_address(limits.RESET_PER_IP, meta.ip)
    key = email_lookup_key(email)
    limiter.hit(limits.RESET_PER_ACCOUNT, key)
    user = db.scalar(select(User).where(func.lower(User.email) == key))
    if user is not None and user.status == "active":
        jobs.defer(db, "accounts.send_password_reset", user_id=str(user.id))


def send_password_reset(
    *, db: Session, settings: Settings, mailer: Mailer, user_id: uuid.UUID
) -> None:
    user = db.get(User, user_id)
    if user is None or user.status != "active":
        return
    raw = _mint(db, PasswordReset, user, RESET_TTL)
    site = site_settings.get(db, SITE_NAME)
    mailer.send(
        emails.password_reset(
            to=user.email,
            site=site,
            link=_link(settings, "/reset-password", raw),
            token=raw,
            minutes=int(RESET_TTL.total_seconds() // 60),
        )
    )


def confirm_password_reset(
    *, db: Session, limiter: RateLimiter, token: str, new_password: str, meta: RequestMeta
) -> None:
    """Set a new password from a reset token. Revokes every session and personal API token;
    two-factor stays on."""
    limiter.hit_address(limits.VERIFY_PER_IP, meta.ip)
    record = db.scalar(
        select(PasswordReset).where(PasswordReset.token == hash_secret(token)).with_for_update()
    )
    now = utcnow()
    if record is None or record.used_at is not None or record.expires_at <= now:
        raise InvalidTokenError(
            "This reset link is invalid, used or expired; ask for a new one.", status=400
        )
    user = db.get(User, record.user_id, with_for_update=USER_ROW_LOCK)
    assert user is not None
    if user.status != "active":
        raise InvalidTokenError("This reset link is no longer valid.", status=400)
    user.password_hash = hash_password(new_password)
    # Following the link proved the address works.
    user.email_verified = True
    # Every outstanding reset link dies with this one.
    db.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    revoked = revocation.revoke_all(db=db, user_id=user.id)
    # Whoever held the account may have made tokens: they end with the logins. (The count's
    # key avoids "token", which the audit trail redacts as a secret.)
    tokens = revocation.revoke_api_tokens(db=db, user_id=user.id)
    extra = {"sessions_revoked": revoked, "api_access_revoked": tokens}
    audit.label(user, "user.password_reset", by_self=True, extra=extra)


# -- profile -------------------------------------------------------------------------------


def update_profile(*, db: Session, user: User, body: MeUpdate) -> User:
    for field, value in body.model_dump(include=body.model_fields_set).items():
        setattr(user, field, value)
    db.flush()
    return user


def change_password(
    *,
    db: Session,
    limiter: RateLimiter,
    user: User,
    current_password: str,
    new_password: str,
    keep_session: uuid.UUID,
) -> None:
    """Change the password; every other login of the user is signed out."""
    limiter.hit(limits.PASSWORD_CHANGE_PER_ACCOUNT, str(user.id))
    if not verify_password(user.password_hash, current_password):
        audit.record(
            db=db, action="user.password_change_failed", entity_type="user", entity_id=user.id
        )
        raise WrongPasswordError()
    user.password_hash = hash_password(new_password)
    revoked = revocation.revoke_all(db=db, user_id=user.id, except_family=keep_session)
    audit.label(user, "user.password_change", extra={"sessions_revoked": revoked})


def _link(settings: Settings, path: str, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}{path}?{urlencode({'token': token})}"


def purge_expired_tokens(*, db: Session, keep: timedelta = timedelta(days=7)) -> int:
    """Delete refresh, verification and reset tokens that expired more than ``keep`` ago.
    A rotated token's predecessor always expires first, so a family is deleted oldest first
    within one statement and no successor link is left dangling."""
    cutoff = utcnow() - keep
    removed = 0
    for model in (RefreshToken, EmailVerification, PasswordReset):
        result = db.execute(delete(model).where(model.expires_at < cutoff))
        removed += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return removed


def lock_user(*, db: Session, user_id: uuid.UUID) -> None:
    """Serialise the caller's transaction with every other change to this user (balance,
    quota, dunning) until it ends."""
    db.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


def emails_of(*, db: Session, user_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """The email address of each of ``user_ids`` that exists (one query; staff lists name the
    users of their rows)."""
    wanted = {user_id for user_id in user_ids if user_id is not None}
    if not wanted:
        return {}
    rows = db.execute(select(User.id, User.email).where(User.id.in_(wanted)))
    return {row[0]: row[1] for row in rows}
