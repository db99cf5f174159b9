"""Token primitives: signed JWT access tokens and opaque secrets stored as hashes.

Access tokens are HS256 JWTs; the algorithm is pinned on decode, so ``alg: none`` or any other
algorithm is refused. Refresh, verification and reset tokens are 256-bit random strings of which
the database keeps only the SHA-256: a leaked table grants nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from vmcloud.config import Settings
from vmcloud.core.errors import UnauthorizedError

ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["sub", "role", "exp", "iat", "jti", "sid"]


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    role: str
    session_id: uuid.UUID
    jti: str
    expires_at: int = 0  # the token's "exp", in seconds since the epoch


def issue_access_token(
    *, settings: Settings, user_id: uuid.UUID, role: str, session_id: uuid.UUID
) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds. ``sid`` names the login (the refresh
    token family) the token belongs to."""
    lifetime = settings.access_token_minutes * 60
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "role": role,
        "sid": str(session_id),
        "iat": now,
        "exp": now + timedelta(seconds=lifetime),
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    return jwt.encode(claims, settings.jwt_key, algorithm=ALGORITHM), lifetime


def decode_access_token(*, settings: Settings, token: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_key,
            algorithms=[ALGORITHM],
            options={"require": _REQUIRED_CLAIMS},
        )
        if claims.get("typ") != "access":
            raise jwt.InvalidTokenError("not an access token")
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            role=str(claims["role"]),
            session_id=uuid.UUID(claims["sid"]),
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise UnauthorizedError(
            "The access token is missing, malformed or expired.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from exc


def new_secret() -> tuple[str, str]:
    """A fresh opaque token (256 bits, URL-safe) and the hash to store for it."""
    raw = secrets.token_urlsafe(32)
    return raw, hash_secret(raw)


def hash_secret(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()
