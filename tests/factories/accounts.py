"""Users for tests, written straight through the ORM (no API round trip)."""

from __future__ import annotations

import itertools

from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.accounts.passwords import hash_password

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)
_HASH_CACHE: dict[str, str] = {}


def _hash(password: str) -> str:
    # argon2 is deliberately slow; tests reuse one hash per distinct password.
    if password not in _HASH_CACHE:
        _HASH_CACHE[password] = hash_password(password)
    return _HASH_CACHE[password]


def make_user(
    db: Session,
    *,
    role: str = "customer",
    status: str = "active",
    email_verified: bool = True,
    password: str = PASSWORD,
    username: str | None = None,
    email: str | None = None,
) -> User:
    n = next(_counter)
    user = User(
        email=email or f"user{n}@example.com",
        username=username or f"user{n}",
        password_hash=_hash(password),
        role=role,
        status=status,
        email_verified=email_verified,
    )
    db.add(user)
    db.flush()
    return user
