"""Users for tests, written straight through the ORM (no API round trip)."""

from __future__ import annotations

import itertools
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.accounts.passwords import hash_password
from vmcloud.billing import ledger

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
    balance: Decimal | str = "0",
) -> User:
    """A user; ``balance`` arrives as a staff credit, so the ledger rule holds."""
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
    if Decimal(balance) > 0:
        fund(db, user, balance)
    return user


def fund(db: Session, user: User, amount: Decimal | str) -> None:
    """Credit ``amount`` to the user through the ledger."""
    ledger.post(
        db=db,
        user_id=user.id,
        type_="credit",
        amount=Decimal(amount),
        currency="USD",
        payment_method="manual",
        payment_provider="manual",
        metadata={"reason": "test funding"},
    )
    db.refresh(user)


def new_public_key() -> str:
    """A fresh ed25519 public key, as one OpenSSH line."""
    private = Ed25519PrivateKey.generate()
    return private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
