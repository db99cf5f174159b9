"""Account operations."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.accounts.passwords import generate_password, hash_password
from vmcloud.accounts.validation import check_username, normalise_email
from vmcloud.core.errors import ConflictError

ROLES = ("customer", "support", "admin")
_FIRST_ADMIN_LOCK = 0x766D61646D696E  # serialises first-admin creation across processes


def find_by_login(*, db: Session, login: str) -> User | None:
    """A user by email (case-insensitive) or username."""
    value = login.strip()
    return db.scalar(
        select(User).where((func.lower(User.email) == value.lower()) | (User.username == value))
    )


def create_admin(*, db: Session, email: str, username: str) -> tuple[User, str]:
    """Create an active, verified admin with a generated password; returns it once."""
    email = normalise_email(email)
    username = check_username(username)
    if find_by_login(db=db, login=email) or find_by_login(db=db, login=username):
        raise ConflictError("A user with this email or username already exists.")
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
