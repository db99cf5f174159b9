"""Logging in and out of the panel, with the API's own login service (rate limits, 2FA,
audit): ``/login``, ``/login/2fa``, ``/logout``.

An account with two-factor authentication logs in in two steps. Once its password is checked,
a short-lived signed cookie names the account and a digest of its password hash (so a
password change or reset ends the half-done login); the second form finishes the login with
a TOTP or recovery code through ``sessions.login_second_factor``.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import sessions
from vmcloud.accounts.deps import Limiter, login_address_not_refused
from vmcloud.accounts.errors import InvalidTokenError, TwoFactorRequiredError
from vmcloud.accounts.schemas import LoginRequest, TwoFactorCode
from vmcloud.accounts.service import find_by_login
from vmcloud.config import Settings
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ProblemError
from vmcloud.core.net import ClientMeta
from vmcloud.db.session import DbSession
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import REGISTRATION_ENABLED
from vmcloud.web import session
from vmcloud.web.forms import FormError, parse, settle
from vmcloud.web.render import redirect, render
from vmcloud.web.session import CurrentLogin

router = APIRouter(include_in_schema=False)

PENDING_COOKIE = "__Host-vmc_login2fa"
PENDING_SECONDS = 300


@router.get("/")
def home(request: Request) -> Response:
    return redirect(request, "/instances" if session.cookie_secret(request) else "/login")


@router.get("/login")
def login_page(request: Request, db: DbSession, next: str = "") -> Response:
    return render(
        request,
        "auth/login.html",
        {"next": session.safe_next(next), "registration_open": registration_open(db)},
    )


@router.post("/login", dependencies=[Depends(login_address_not_refused)])
def login(
    request: Request,
    db: DbSession,
    limiter: Limiter,
    settings: AppSettings,
    meta: ClientMeta,
    login: Annotated[str, Form(max_length=255)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    target = session.safe_next(next)
    form = {"login": login}
    try:
        body = parse(LoginRequest, {"login": login, "password": password})
        tokens = sessions.login(
            db=db,
            limiter=limiter,
            settings=settings,
            login=body.login,
            password=body.password,
            totp_code=None,
            meta=meta,
        )
    except TwoFactorRequiredError as exc:
        settle(db, exc)
        user = find_by_login(db=db, login=body.login)
        if user is None:  # deleted meanwhile
            return _login_form(request, db, form, target, FormError(message=exc.detail))
        response = redirect(request, "/login/2fa?next=" + _quote(target))
        _set_pending(response, settings, user.id, sessions.password_fingerprint(user))
        return response
    except ProblemError as exc:
        return _login_form(request, db, form, target, settle(db, exc))
    except FormError as problem:
        return _login_form(request, db, form, target, problem)
    response = redirect(request, target)
    session.start(response, settings=settings, secret=tokens.refresh_token)
    return response


@router.get("/login/2fa")
def second_factor_page(request: Request, settings: AppSettings, next: str = "") -> Response:
    if _pending(request, settings) is None:
        return _start_again(request, next)
    return render(request, "auth/two_factor.html", {"next": session.safe_next(next)})


@router.post("/login/2fa", dependencies=[Depends(login_address_not_refused)])
def second_factor(
    request: Request,
    db: DbSession,
    limiter: Limiter,
    settings: AppSettings,
    meta: ClientMeta,
    code: Annotated[str, Form(max_length=40)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    target = session.safe_next(next)
    pending = _pending(request, settings)
    if pending is None:
        return _start_again(request, target)
    try:
        body = parse(TwoFactorCode, {"code": code})
        tokens = sessions.login_second_factor(
            db=db,
            limiter=limiter,
            settings=settings,
            user_id=pending[0],
            fingerprint=pending[1],
            code=body.code,
            meta=meta,
        )
    except InvalidTokenError as exc:
        settle(db, exc)
        return _start_again(request, target)
    except ProblemError as exc:
        return _second_factor_form(request, target, settle(db, exc))
    except FormError as problem:
        problem.message = "Enter the 6-digit code from your app, or a recovery code."
        return _second_factor_form(request, target, problem)
    response = redirect(request, target)
    response.delete_cookie(PENDING_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    session.start(response, settings=settings, secret=tokens.refresh_token)
    return response


@router.post("/logout")
def logout(request: Request, login: CurrentLogin, db: DbSession, meta: ClientMeta) -> Response:
    raw = session.cookie_secret(request) or ""
    sessions.logout(db=db, user=login.user, raw=raw, meta=meta)
    response = redirect(request, "/login", flash="You are logged out.")
    session.end(response)
    return response


def registration_open(db: Session) -> bool:
    return bool(site_settings.get(db, REGISTRATION_ENABLED))


def _login_form(
    request: Request, db: Session, form: dict[str, str], target: str, problem: FormError
) -> Response:
    context = {
        "form": form,
        "next": target,
        "problem": problem,
        "registration_open": registration_open(db),
    }
    return render(
        request, "auth/login.html", context, status=problem.status, headers=problem.headers
    )


def _second_factor_form(request: Request, target: str, problem: FormError) -> Response:
    return render(
        request,
        "auth/two_factor.html",
        {"next": target, "problem": problem},
        status=problem.status,
        headers=problem.headers,
    )


def _start_again(request: Request, target: str) -> Response:
    response = redirect(
        request,
        "/login?next=" + _quote(session.safe_next(target)),
        flash="That login has expired; enter your password again.",
        level="warning",
    )
    response.delete_cookie(PENDING_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


def _quote(target: str) -> str:
    return quote(target, safe="/")


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    key = hmac.new(settings.jwt_key.encode(), b"vmcloud.login-2fa", hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(key, salt="vmcloud.login-2fa")


def _set_pending(
    response: Response, settings: Settings, user_id: uuid.UUID, fingerprint: str
) -> None:
    response.set_cookie(
        PENDING_COOKIE,
        _serializer(settings).dumps([str(user_id), fingerprint]),
        max_age=PENDING_SECONDS,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )


def _pending(request: Request, settings: Settings) -> tuple[uuid.UUID, str] | None:
    """The account whose password was checked in the last five minutes, and its fingerprint."""
    raw = request.cookies.get(PENDING_COOKIE)
    if not raw or len(raw) > 400:
        return None
    try:
        data = _serializer(settings).loads(raw, max_age=PENDING_SECONDS)
        user_id, fingerprint = data
        return uuid.UUID(str(user_id)), str(fingerprint)
    except (BadSignature, ValueError, TypeError):
        return None
