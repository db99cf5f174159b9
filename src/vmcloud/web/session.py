"""Panel sessions: an opaque ``__Host-vmc_session`` cookie holding the secret of the login's
refresh token, which stays on the server side of the API's login mechanism.

The browser never sees an access token. Each request looks the cookie's login up (one
statement: account and token together), so whatever ends an API login — logout, "log out
everywhere", a password change or reset, a suspension — ends the panel session on its very
next request. The cookie is ``HttpOnly; Secure; SameSite=Lax; Path=/``: scripts cannot read it
and cross-site form posts do not carry it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import sessions
from vmcloud.accounts.models import RefreshToken, User
from vmcloud.audit import service as audit
from vmcloud.config import Settings
from vmcloud.core.errors import ProblemError
from vmcloud.db.session import DbSession

SESSION_COOKIE = "__Host-vmc_session"
MAX_COOKIE = 200


class LoginRequiredError(ProblemError):
    """No live panel session: pages answer with a redirect to the login page."""

    status = 401
    type = "login-required"
    title = "Log in to continue"


@dataclass(frozen=True)
class PanelLogin:
    user: User
    token: RefreshToken
    role: str = ""  # the user's role as read with the login (an error page may render after
    # the request's session rolled back, when the user row can no longer be read)

    @property
    def session_id(self) -> uuid.UUID:
        return self.token.family_id


def cookie_secret(request: Request) -> str | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw or len(raw) > MAX_COOKIE:
        return None
    return raw


def login_of(db: Session, raw: str | None) -> PanelLogin | None:
    """The live login a session cookie's secret names, read in ``db`` (None when there is
    none: no cookie, logged out, suspended). Streams call it in each render's own session."""
    found = sessions.find_live_login(db=db, raw=raw) if raw else None
    return PanelLogin(found[0], found[1], found[0].role) if found else None


def current_login(request: Request, db: DbSession) -> PanelLogin:
    login = login_of(db, cookie_secret(request))
    if login is None:
        raise LoginRequiredError()
    audit.context_of(db).actor_id = login.user.id
    request.state.panel_login = login
    return login


def panel_user(login: Annotated[PanelLogin, Depends(current_login)]) -> User:
    return login.user


CurrentLogin = Annotated[PanelLogin, Depends(current_login)]
PanelUser = Annotated[User, Depends(panel_user)]


def start(response: Response, *, settings: Settings, secret: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=settings.refresh_token_days * 86400,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )


def end(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")


def login_url(request: Request) -> str:
    """The login page, coming back to this page afterwards."""
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return "/login?next=" + quote(target, safe="/")


def safe_next(value: str | None) -> str:
    """Where to go after logging in: only a path on this site (never ``//host`` or a URL)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/instances"
    if any(ord(ch) < 32 for ch in value):
        return "/instances"
    return value
