"""Password hashing with argon2id at or above OWASP's minimum (m = 19 MiB, t = 2, p = 1)."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def generate_password() -> str:
    """A random password for accounts created by operators (about 144 bits)."""
    return secrets.token_urlsafe(18)


MIN_LENGTH = 10
# Long passphrases are welcome and never truncated; the cap only stops multi-megabyte bodies
# from becoming hashing work.
MAX_LENGTH = 1024

# Verified against when the account does not exist, so that a wrong email costs the same time
# as a wrong password and timing says nothing about which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(32))


def burn_verification_time(password: str) -> None:
    verify_password(_DUMMY_HASH, password)
