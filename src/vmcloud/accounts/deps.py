"""Authentication and role dependencies for routes: ``CurrentUser``, ``StaffUser``,
``AdminUser`` (and the functions ``require_user``, ``require_staff``, ``require_admin``).

The user is loaded from the database on every request, so a suspension, a ban or a role change
takes effect on the very next request, not when the access token expires.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import DateTime, Select, bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.types import Uuid

from vmcloud.accounts import api_tokens, limits, revocation
from vmcloud.accounts.errors import EmailUnverifiedError, PersonalTokenRefusedError
from vmcloud.accounts.models import STAFF_ROLES, User
from vmcloud.accounts.tokens import AccessClaims, decode_access_token
from vmcloud.audit import service as audit
from vmcloud.config import Settings
from vmcloud.core.clock import utcnow
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ForbiddenError, RateLimitedError, UnauthorizedError
from vmcloud.core.net import client_ip
from vmcloud.core.ratelimit import RateLimiter, address_subject
from vmcloud.db.session import DbSession

_bearer = HTTPBearer(
    auto_error=False,
    description="An access token from POST /auth/login, or a personal API token (vmc_pat_…)",
)


# Access tokens already verified, by (signing key, token): a client sends the same token with
# every request for its lifetime, and checking the signature is most of a request's token work.
# Only the event loop's thread touches it (``_claims`` is async). An entry serves until its
# token's own expiry; revocation is checked in the database on every request regardless.
_VERIFIED: OrderedDict[tuple[str, str], AccessClaims] = OrderedDict()
_VERIFIED_MAX = 10_000


def _verified(settings: Settings, token: str) -> AccessClaims:
    key = (settings.jwt_key, token)
    claims = _VERIFIED.get(key)
    if claims is not None and time.time() < claims.expires_at:
        _VERIFIED.move_to_end(key)
        return claims
    _VERIFIED.pop(key, None)
    claims = decode_access_token(settings=settings, token=token)  # raises when not valid
    _VERIFIED[key] = claims
    if len(_VERIFIED) > _VERIFIED_MAX:
        _VERIFIED.popitem(last=False)
    return claims


@dataclass(frozen=True)
class PersonalToken:
    """A bearer credential that is a personal API token (``accounts/api_tokens.py``): checked
    against the database by :func:`require_user`, never a login of its own."""

    secret: str = field(repr=False)  # never in a log line or a traceback's locals


def _unauthorized() -> UnauthorizedError:
    return UnauthorizedError(
        "Log in and send the access token as 'Authorization: Bearer <token>'.",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _bearer_credential(
    request: Request,
    settings: AppSettings,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AccessClaims | PersonalToken:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized()
    if credentials.credentials.startswith(api_tokens.PREFIX):
        return PersonalToken(credentials.credentials)
    claims = _verified(settings, credentials.credentials)
    request.state.claims = claims
    return claims


Credential = Annotated[AccessClaims | PersonalToken, Depends(_bearer_credential)]


async def _claims(credential: Credential) -> AccessClaims:
    """The caller's login: routes that act on logins, the password, 2FA or tokens need one, and
    refuse a personal API token with 403."""
    if isinstance(credential, PersonalToken):
        raise PersonalTokenRefusedError(
            "A personal API token cannot do this; log in (POST /auth/login) and use the"
            " access token."
        )
    return credential


TokenClaims = Annotated[AccessClaims, Depends(_claims)]


@functools.cache
def user_and_session_query() -> Select[User, bool]:
    """The caller's account and whether their login is still live, in one statement (built
    once; ``user_id``, ``session_id`` and ``now`` bound when run)."""
    session_id = bindparam("session_id", type_=Uuid())
    live = revocation.live_session(session_id, bindparam("now", type_=DateTime()))
    return select(User, live.label("session_live")).where(User.id == bindparam("user_id"))


def require_user(request: Request, db: DbSession, credential: Credential) -> User:
    """The caller, read fresh on every request (FastAPI runs it once per request however many
    dependencies ask for it), with the login check in the same round trip. A personal API
    token is looked up by its hash and held to its scopes for this route."""
    if isinstance(credential, PersonalToken):
        # The path the router matched this route on: its area is the token's to allow.
        path = str(request.scope["path"]).removeprefix(request.scope.get("root_path", ""))
        owner = api_tokens.authenticate(
            db=db, secret=credential.secret, method=request.method, path=path
        )
        audit.context_of(db).actor_id = owner.id
        return owner
    return user_for_claims(db, credential)


def user_for_claims(db: Session, claims: AccessClaims) -> User:
    """The active user behind a live login's access token (401 otherwise), in one statement."""
    values = {"user_id": claims.user_id, "session_id": claims.session_id, "now": utcnow()}
    row = db.execute(user_and_session_query(), values).one_or_none()
    user: User | None = row[0] if row is not None else None
    session_live = bool(row[1]) if row is not None else False
    if user is None or user.status != "active":
        raise UnauthorizedError(
            "This account cannot be used.", headers={"WWW-Authenticate": "Bearer"}
        )
    if not session_live:
        raise UnauthorizedError(
            "This login has ended; log in again.", headers={"WWW-Authenticate": "Bearer"}
        )
    audit.context_of(db).actor_id = user.id
    return user


async def require_login(
    user: Annotated[User, Depends(require_user)], _: Annotated[AccessClaims, Depends(_claims)]
) -> User:
    """The caller, signed in with a login (not a personal API token)."""
    return user


def check_staff(user: User) -> User:
    """``user`` when they are staff (support or admin), else 403: the one check behind the
    API's staff routes and the staff panel's pages."""
    if user.role not in STAFF_ROLES:
        raise ForbiddenError("This needs a staff account.")
    return user


def check_admin(user: User) -> User:
    """``user`` when they are an admin, else 403 (API and staff panel alike)."""
    if user.role != "admin":
        raise ForbiddenError("This needs an admin account.")
    return user


def is_admin(user: User) -> bool:
    return user.role == "admin"


async def require_staff(user: Annotated[User, Depends(require_user)]) -> User:
    return check_staff(user)


async def require_admin(user: Annotated[User, Depends(require_user)]) -> User:
    return check_admin(user)


async def require_verified(user: Annotated[User, Depends(require_user)]) -> User:
    """For actions that move money or create resources: the email must be confirmed."""
    if not user.email_verified:
        raise EmailUnverifiedError(
            "Confirm your email address first; POST /auth/resend-verification sends a new link."
        )
    return user


CurrentUser = Annotated[User, Depends(require_user)]
LoginUser = Annotated[User, Depends(require_login)]
VerifiedUser = Annotated[User, Depends(require_verified)]
StaffUser = Annotated[User, Depends(require_staff)]
AdminUser = Annotated[User, Depends(require_admin)]


async def _limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


Limiter = Annotated[RateLimiter, Depends(_limiter)]


# A client that keeps trying while it is known refused waits this long for each answer. The
# wait is on the event loop (no thread, no connection), and a client hammering login gets a
# few answers a second instead of hundreds, each one costing the other requests CPU.
REFUSAL_DELAY = 0.5


async def _pause() -> None:
    await asyncio.sleep(REFUSAL_DELAY)


async def login_address_not_refused(request: Request) -> None:
    """An address this process knows is over its login limit is refused here, on the event
    loop, before the request takes a thread, a database connection or a hash. (The limit
    itself is counted, in the database, by the login.)"""
    limiter: RateLimiter = request.app.state.rate_limiter
    ip = client_ip(request, request.app.state.trusted_proxies)
    try:
        limiter.refuse_if_remembered(limits.LOGIN_PER_IP, address_subject(ip))
    except RateLimitedError:
        await _pause()
        raise
