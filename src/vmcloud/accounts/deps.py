"""Authentication and role dependencies for routes: ``CurrentUser``, ``StaffUser``,
``AdminUser`` (and the functions ``require_user``, ``require_staff``, ``require_admin``).

The user is loaded from the database on every request, so a suspension, a ban or a role change
takes effect on the very next request, not when the access token expires.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vmcloud.accounts import revocation
from vmcloud.accounts.errors import EmailUnverifiedError
from vmcloud.accounts.models import STAFF_ROLES, User
from vmcloud.accounts.tokens import AccessClaims, decode_access_token
from vmcloud.audit import service as audit
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ForbiddenError, UnauthorizedError
from vmcloud.core.ratelimit import RateLimiter
from vmcloud.db.session import DbSession

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /auth/login")


def _claims(
    request: Request,
    settings: AppSettings,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AccessClaims:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError(
            "Log in and send the access token as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    claims = decode_access_token(settings=settings, token=credentials.credentials)
    request.state.claims = claims
    return claims


TokenClaims = Annotated[AccessClaims, Depends(_claims)]


def require_user(db: DbSession, claims: TokenClaims) -> User:
    user = db.get(User, claims.user_id)
    if user is None or user.status != "active":
        raise UnauthorizedError(
            "This account cannot be used.", headers={"WWW-Authenticate": "Bearer"}
        )
    if not revocation.session_is_live(db=db, family_id=claims.session_id):
        raise UnauthorizedError(
            "This login has ended; log in again.", headers={"WWW-Authenticate": "Bearer"}
        )
    audit.context_of(db).actor_id = user.id
    return user


def require_staff(user: Annotated[User, Depends(require_user)]) -> User:
    if user.role not in STAFF_ROLES:
        raise ForbiddenError("This needs a staff account.")
    return user


def require_admin(user: Annotated[User, Depends(require_user)]) -> User:
    if user.role != "admin":
        raise ForbiddenError("This needs an admin account.")
    return user


def require_verified(user: Annotated[User, Depends(require_user)]) -> User:
    """For actions that move money or create resources: the email must be confirmed."""
    if not user.email_verified:
        raise EmailUnverifiedError(
            "Confirm your email address first; POST /auth/resend-verification sends a new link."
        )
    return user


CurrentUser = Annotated[User, Depends(require_user)]
VerifiedUser = Annotated[User, Depends(require_verified)]
StaffUser = Annotated[User, Depends(require_staff)]
AdminUser = Annotated[User, Depends(require_admin)]


def _limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


Limiter = Annotated[RateLimiter, Depends(_limiter)]
