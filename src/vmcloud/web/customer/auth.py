"""Logging in and out of the panel, with the API's own login service (rate limits, 2FA,
audit): ``/login``, ``/logout``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from vmcloud.accounts import sessions
from vmcloud.accounts.deps import Limiter, login_address_not_refused
from vmcloud.accounts.errors import TwoFactorRequiredError
from vmcloud.accounts.schemas import LoginRequest
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ProblemError
from vmcloud.core.net import ClientMeta
from vmcloud.db.session import DbSession
from vmcloud.web import session
from vmcloud.web.forms import FormError, parse, settle
from vmcloud.web.render import redirect, render
from vmcloud.web.session import CurrentLogin

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(request: Request) -> Response:
    return redirect(request, "/instances" if session.cookie_secret(request) else "/login")


@router.get("/login")
def login_page(request: Request, next: str = "") -> Response:
    return render(request, "auth/login.html", {"next": session.safe_next(next)})


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
    except ProblemError as exc:
        problem = settle(db, exc)
        if isinstance(exc, TwoFactorRequiredError):
            problem.message = "This account uses two-factor authentication."
        return _login_form(request, form, target, problem)
    except FormError as problem:
        return _login_form(request, form, target, problem)
    response = redirect(request, target)
    session.start(response, settings=settings, secret=tokens.refresh_token)
    return response


@router.post("/logout")
def logout(request: Request, login: CurrentLogin, db: DbSession, meta: ClientMeta) -> Response:
    raw = session.cookie_secret(request) or ""
    sessions.logout(db=db, user=login.user, raw=raw, meta=meta)
    response = redirect(request, "/login", flash="You are logged out.")
    session.end(response)
    return response


def _login_form(
    request: Request, form: dict[str, str], target: str, problem: FormError
) -> Response:
    return render(
        request,
        "auth/login.html",
        {"form": form, "next": target, "problem": problem},
        status=problem.status,
        headers=problem.headers,
    )
