"""Personal API tokens: long-lived bearer tokens a user makes in the panel for scripts.

The secret is ``vmc_pat_`` and 256 random bits (URL-safe), shown once; the database keeps its
SHA-256 and its first characters (``prefix``, to recognise it in a list). A token carries
scopes ``<area>:read`` or ``<area>:write`` (write includes read); the API's bearer dependency
(``accounts/deps.py``) finds it by hash, refuses it when revoked, expired or its owner is not
active, and checks the route's area (:func:`area_of`) and method against the scopes.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from vmcloud.accounts.errors import InsufficientScopeError
from vmcloud.accounts.models import STAFF_ROLES, ApiToken, User
from vmcloud.accounts.service import lock_user
from vmcloud.accounts.tokens import hash_secret
from vmcloud.audit import service as audit
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ConflictError, InvalidInputError, NotFoundError, UnauthorizedError

PREFIX = "vmc_pat_"
SHOWN_PREFIX = len(PREFIX) + 6  # "vmc_pat_" and six characters of the secret
MAX_TOKENS_PER_USER = 50
LAST_USED_EVERY = timedelta(minutes=1)  # "last used" is written at most this often
AREAS = ("instances", "billing", "support", "account", "admin")
STAFF_AREAS = frozenset({"admin"})
READ_METHODS = frozenset({"GET", "HEAD"})

# Each API path (after /api/v1) belongs to one area; the longest matching prefix wins. A path
# without an area refuses every personal token (tests/accounts/test_api_tokens.py checks that
# every route has one).
_PATH_AREAS = (
    ("/admin/", "admin"),
    ("/instances", "instances"),
    ("/products", "instances"),
    ("/regions", "instances"),
    ("/images", "instances"),
    ("/billing", "billing"),
    ("/subscriptions", "billing"),
    ("/tickets", "support"),
    ("/me", "account"),
    ("/auth/", "account"),
    ("/settings/", "account"),
)
API_PREFIX = "/api/v1"


def area_of(path: str) -> str | None:
    """The area of an API path, a request's or a route's template (``/api/v1/instances/…``)."""
    rest = path.removeprefix(API_PREFIX)
    if rest == path:
        return None
    for prefix, area in _PATH_AREAS:
        if rest == prefix.rstrip("/") or rest.startswith(prefix.rstrip("/") + "/"):
            return area
    return None


def scope_choices(user: User) -> tuple[str, ...]:
    """The areas this user may give a token."""
    return AREAS if user.role in STAFF_ROLES else tuple(a for a in AREAS if a not in STAFF_AREAS)


def normalise_scopes(*, user: User, scopes: Iterable[str]) -> list[str]:
    """The scopes as stored: one per area (write wins over read), in ``AREAS`` order; an
    unknown scope, or ``admin`` for a customer, is a 422."""
    allowed = scope_choices(user)
    chosen: dict[str, str] = {}
    for scope in scopes:
        area, _, level = scope.partition(":")
        if area not in allowed or level not in ("read", "write"):
            raise InvalidInputError(
                f"Unknown scope {scope[:60]!r}.",
                errors=[{"field": "scopes", "message": "choose among " + ", ".join(allowed)}],
            )
        if chosen.get(area) != "write":
            chosen[area] = level
    if not chosen:
        raise InvalidInputError(
            "Give the token at least one scope.",
            errors=[{"field": "scopes", "message": "choose at least one area"}],
        )
    return [f"{area}:{chosen[area]}" for area in AREAS if area in chosen]


def list_tokens(*, db: Session, user: User) -> list[ApiToken]:
    """The user's tokens not revoked, newest first (expired ones too, marked by their date)."""
    stmt = (
        select(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.created_at.desc(), ApiToken.id)
    )
    return list(db.scalars(stmt))


def create_token(
    *, db: Session, user: User, name: str, scopes: Iterable[str], expires_at: datetime | None
) -> tuple[ApiToken, str]:
    """A new token and its secret (the only time the secret exists outside the client)."""
    stored = normalise_scopes(user=user, scopes=scopes)
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise InvalidInputError(
            "The expiry must be in the future.",
            errors=[{"field": "expires_at", "message": "must be in the future"}],
        )
    lock_user(db=db, user_id=user.id)
    live = db.scalar(
        select(func.count(ApiToken.id)).where(
            ApiToken.user_id == user.id,
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
    )
    if (live or 0) >= MAX_TOKENS_PER_USER:
        raise ConflictError(f"An account may hold {MAX_TOKENS_PER_USER} tokens; revoke one first.")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_secret(secret),
        prefix=secret[:SHOWN_PREFIX],
        scopes=stored,
        expires_at=expires_at,
    )
    db.add(token)
    db.flush()
    return token, secret


def get_token(*, db: Session, user: User, token_id: uuid.UUID) -> ApiToken:
    """One of the user's live tokens; anyone else's, or one revoked, is 404."""
    token = db.scalar(
        select(ApiToken).where(
            ApiToken.id == token_id, ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)
        )
    )
    if token is None:
        raise NotFoundError("No such token.")
    return token


def revoke_token(*, db: Session, user: User, token_id: uuid.UUID) -> ApiToken:
    """Revoke one of the user's live tokens (404 as :func:`get_token`)."""
    token = get_token(db=db, user=user, token_id=token_id)
    token.revoked_at = utcnow()
    audit.label(token, "api_token.revoke")
    db.flush()
    return token


def _refused(detail: str) -> UnauthorizedError:
    return UnauthorizedError(detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def authenticate(*, db: Session, secret: str, method: str, path: str | None) -> User:
    """The owner of the personal token ``secret``, if it may call ``method`` on ``path``: 401
    for a token unknown, revoked or expired or an owner not active; 403 for a route outside
    its scopes. One statement, plus a "last used" write at most once a minute per token.

    A staff owner keeps staff powers only when the token holds the ``admin`` scope for this
    method (:func:`has_staff_powers`); otherwise the user comes back acting as a customer for
    this request: its loaded ``role`` reads ``customer`` (never written, see
    :func:`_act_as_customer`), so every role check (the loaders' "staff may see any ticket or
    instance", internal notes, the role dependencies) treats the token as its owner's
    customer self."""
    now = utcnow()
    row = db.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_secret(secret))
    ).one_or_none()
    if row is None or row[0].revoked_at is not None:
        raise _refused("This API token is unknown or revoked.")
    token, user = row[0], row[1]
    if token.expires_at is not None and token.expires_at <= now:
        raise _refused("This API token has expired.")
    if user.status != "active":
        raise _refused("This account cannot be used.")
    check_scope(scopes=token.scopes, method=method, path=path)
    if user.role in STAFF_ROLES and not has_staff_powers(scopes=token.scopes, method=method):
        _act_as_customer(user)
    if token.last_used_at is None or token.last_used_at <= now - LAST_USED_EVERY:
        _touch(db, token.id, now)
    return user


def has_staff_powers(*, scopes: Iterable[str], method: str) -> bool:
    """Whether a staff member's token acts with staff powers for ``method``: with ``admin:read``
    for reads, ``admin:write`` for anything."""
    held = set(scopes)
    return "admin:write" in held or (method.upper() in READ_METHODS and "admin:read" in held)


def _act_as_customer(user: User) -> None:
    # The loaded value, not a change: the session never writes it (nothing marks it modified)
    # and, as sessions do not expire on commit, it holds for the rest of the request.
    set_committed_value(user, "role", "customer")


def _touch(db: Session, token_id: uuid.UUID, now: datetime) -> None:
    # A guarded statement, not an ORM change: it skips the audit capture. It never waits: a
    # row another transaction holds (a request writing it, a revocation) is skipped, the next
    # use writes it. And it commits at once, so no request holds the row while it runs, and a
    # request that fails still counts as a use. Committing here is safe: this runs while the
    # caller is authenticated, before the request has written anything. (A connection of its
    # own would be cleaner, but a request waiting for a second connection from a full pool
    # could wait for ever.)
    due = (
        select(ApiToken.id)
        .where(
            ApiToken.id == token_id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - LAST_USED_EVERY),
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    db.execute(
        update(ApiToken)
        .where(ApiToken.id == due)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    db.commit()


def check_scope(*, scopes: Iterable[str], method: str, path: str | None) -> None:
    area = area_of(path) if path else None
    if area is None:
        raise InsufficientScopeError("Personal API tokens cannot be used here.")
    needed = "read" if method.upper() in READ_METHODS else "write"
    held = set(scopes)
    if f"{area}:write" in held or (needed == "read" and f"{area}:read" in held):
        return
    raise InsufficientScopeError(
        f"This token's scopes do not include {area}:{needed}.",
    )
