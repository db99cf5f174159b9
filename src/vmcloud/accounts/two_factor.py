"""TOTP two-factor authentication for an account."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vmcloud.accounts import limits, totp
from vmcloud.accounts.errors import InvalidCodeError, TwoFactorRequiredError, WrongPasswordError
from vmcloud.accounts.models import USER_ROW_LOCK, RecoveryCode, User
from vmcloud.accounts.passwords import verify_password
from vmcloud.accounts.schemas import RecoveryCodes, TwoFactorSetup
from vmcloud.audit import service as audit
from vmcloud.config import Settings
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ConflictError
from vmcloud.core.ratelimit import RateLimiter
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import SITE_NAME


def setup(*, db: Session, settings: Settings, user: User) -> TwoFactorSetup:
    """Start (or restart) enrolment: a new secret, stored encrypted, not yet enforced."""
    db.refresh(
        user, with_for_update=USER_ROW_LOCK
    )  # an `enable` running meanwhile goes first or waits
    if user.two_factor_enabled:
        raise ConflictError("Two-factor authentication is already on; disable it first.")
    secret = totp.new_secret()
    user.two_factor_secret = totp.encrypt(secret, settings.fernet_key)
    user.totp_last_step = None
    audit.label(user, "user.2fa_setup")
    db.flush()
    issuer = site_settings.get(db, SITE_NAME)
    return TwoFactorSetup(
        secret=secret, otpauth_uri=totp.provisioning_uri(secret, account=user.email, issuer=issuer)
    )


def pending_setup(*, db: Session, settings: Settings, user: User) -> TwoFactorSetup | None:
    """The enrolment started by :func:`setup` and not yet confirmed (so a page can show its
    QR code again after a reload), or None."""
    if user.two_factor_enabled or not user.two_factor_secret:
        return None
    try:
        secret = totp.decrypt(user.two_factor_secret, settings.fernet_key)
    except RuntimeError:
        # Started under another encryption key: that enrolment cannot be finished; the page
        # offers to start again (which replaces the secret).
        return None
    issuer = site_settings.get(db, SITE_NAME)
    return TwoFactorSetup(
        secret=secret, otpauth_uri=totp.provisioning_uri(secret, account=user.email, issuer=issuer)
    )


def enable(
    *,
    db: Session,
    limiter: RateLimiter,
    settings: Settings,
    user: User,
    code: str,
) -> RecoveryCodes:
    limiter.hit(limits.SECOND_FACTOR_PER_ACCOUNT, str(user.id))
    db.refresh(user, with_for_update=USER_ROW_LOCK)
    if user.two_factor_enabled:
        raise ConflictError("Two-factor authentication is already on.")
    if not user.two_factor_secret:
        raise ConflictError("Start with POST /me/2fa/setup.")
    if not _accept_totp(settings, user, code):
        raise InvalidCodeError()
    user.two_factor_enabled = True
    codes = totp.new_recovery_codes()
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.add_all(RecoveryCode(user_id=user.id, code_hash=totp.hash_recovery_code(c)) for c in codes)
    audit.label(user, "user.2fa_enable")
    return RecoveryCodes(recovery_codes=codes)


def disable(
    *,
    db: Session,
    limiter: RateLimiter,
    settings: Settings,
    user: User,
    password: str,
    code: str,
) -> None:
    limiter.hit(limits.SECOND_FACTOR_PER_ACCOUNT, str(user.id))
    db.refresh(user, with_for_update=USER_ROW_LOCK)
    if not user.two_factor_enabled:
        raise ConflictError("Two-factor authentication is not on.")
    if not verify_password(user.password_hash, password):
        raise WrongPasswordError()
    if not (_accept_totp(settings, user, code) or _accept_recovery_code(db, user, code)):
        raise InvalidCodeError()
    user.two_factor_enabled = False
    user.two_factor_secret = None
    user.totp_last_step = None
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.label(user, "user.2fa_disable")


def check_login_code(
    *, db: Session, limiter: RateLimiter, settings: Settings, user: User, code: str | None
) -> None:
    """Second step of a login: a fresh TOTP code or an unused recovery code."""
    if not code:
        raise TwoFactorRequiredError(commit=False)
    limiter.hit(limits.SECOND_FACTOR_PER_ACCOUNT, str(user.id))
    db.refresh(user, with_for_update=USER_ROW_LOCK)
    if _accept_totp(settings, user, code):
        return
    if _accept_recovery_code(db, user, code):
        audit.record(
            db=db,
            action="user.recovery_code_used",
            actor_id=user.id,
            entity_type="user",
            entity_id=user.id,
        )
        return
    audit.record(
        db=db,
        action="user.login_failed",
        actor_id=user.id,
        entity_type="user",
        entity_id=user.id,
        extra={"reason": "wrong_second_factor"},
    )
    raise TwoFactorRequiredError("The two-factor code is incorrect or was already used.")


def _accept_totp(settings: Settings, user: User, code: str) -> bool:
    """Checks the code against the stored secret; on success remembers its time step so the
    same code cannot be used again. The caller holds the user's row lock."""
    if not user.two_factor_secret:
        return False
    secret = totp.decrypt(user.two_factor_secret, settings.fernet_key)
    step = totp.matching_step(secret, code, last_step=user.totp_last_step)
    if step is None:
        return False
    user.totp_last_step = step
    return True


def _accept_recovery_code(db: Session, user: User, code: str) -> bool:
    if len(totp.normalise_recovery_code(code)) != 16:
        return False
    row = db.scalar(
        select(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == totp.hash_recovery_code(code),
            RecoveryCode.used_at.is_(None),
        )
        .with_for_update()
    )
    if row is None:
        return False
    row.used_at = utcnow()
    return True
