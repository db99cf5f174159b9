"""The account pages: ``/account`` (profile, password) and ``/account/security`` (two-factor
authentication, live logins), with the services the ``/me`` API calls."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import logins, service, two_factor
from vmcloud.accounts.deps import Limiter
from vmcloud.accounts.schemas import MeUpdate, PasswordChange, TwoFactorCode, TwoFactorDisable
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ProblemError
from vmcloud.core.net import ClientMeta
from vmcloud.db.session import DbSession
from vmcloud.web import session
from vmcloud.web.forms import FormError, parse, settle
from vmcloud.web.render import redirect, render
from vmcloud.web.session import CurrentLogin, PanelLogin

router = APIRouter(prefix="/account", include_in_schema=False)

Name = Annotated[str, Form(max_length=100)]
Secret = Annotated[str, Form(max_length=1024)]
Code = Annotated[str, Form(max_length=40)]
SECURITY = "/account/security"


@router.get("")
def profile_page(request: Request, login: CurrentLogin) -> Response:
    return _profile(request, login)


@router.post("/profile")
def save_profile(
    request: Request,
    login: CurrentLogin,
    db: DbSession,
    first_name: Name = "",
    last_name: Name = "",
    phone: Annotated[str, Form(max_length=50)] = "",
) -> Response:
    values = {"first_name": first_name, "last_name": last_name, "phone": phone}
    try:
        body = parse(MeUpdate, values)
        service.update_profile(db=db, user=login.user, body=body)
    except ProblemError as exc:
        return _profile(request, login, problem=settle(db, exc), form=values)
    except FormError as problem:
        return _profile(request, login, problem=problem, form=values)
    return redirect(request, "/account", flash="Your profile is saved.")


@router.post("/password")
def change_password(
    request: Request,
    login: CurrentLogin,
    db: DbSession,
    limiter: Limiter,
    current_password: Secret = "",
    new_password: Secret = "",
) -> Response:
    try:
        body = parse(
            PasswordChange, {"current_password": current_password, "new_password": new_password}
        )
        service.change_password(
            db=db,
            limiter=limiter,
            user=login.user,
            current_password=body.current_password,
            new_password=body.new_password,
            keep_session=login.session_id,
        )
    except ProblemError as exc:
        return _profile(request, login, password_problem=settle(db, exc))
    except FormError as problem:
        return _profile(request, login, password_problem=problem)
    return redirect(
        request, "/account", flash="Your password is changed; your other logins have ended."
    )


@router.get("/security")
def security_page(
    request: Request, login: CurrentLogin, db: DbSession, settings: AppSettings
) -> Response:
    return _security(request, login, db, settings)


@router.post("/2fa/setup")
def two_factor_setup(
    request: Request, login: CurrentLogin, db: DbSession, settings: AppSettings
) -> Response:
    try:
        two_factor.setup(db=db, settings=settings, user=login.user)
    except ProblemError as exc:
        return _security(request, login, db, settings, setup_problem=settle(db, exc))
    return redirect(request, SECURITY + "#two-factor")


@router.post("/2fa/enable")
def two_factor_enable(
    request: Request,
    login: CurrentLogin,
    db: DbSession,
    limiter: Limiter,
    settings: AppSettings,
    code: Code = "",
) -> Response:
    try:
        body = parse(TwoFactorCode, {"code": code})
        codes = two_factor.enable(
            db=db, limiter=limiter, settings=settings, user=login.user, code=body.code
        )
    except ProblemError as exc:
        return _security(request, login, db, settings, setup_problem=settle(db, exc))
    except FormError as problem:
        return _security(request, login, db, settings, setup_problem=problem)
    # Shown once, in the answer to this post: they are stored only as hashes.
    return render(
        request,
        "account/recovery_codes.html",
        {"section": "account", "codes": codes.recovery_codes},
    )


@router.post("/2fa/disable")
def two_factor_disable(
    request: Request,
    login: CurrentLogin,
    db: DbSession,
    limiter: Limiter,
    settings: AppSettings,
    password: Secret = "",
    code: Code = "",
) -> Response:
    try:
        body = parse(TwoFactorDisable, {"password": password, "code": code})
        two_factor.disable(
            db=db,
            limiter=limiter,
            settings=settings,
            user=login.user,
            password=body.password,
            code=body.code,
        )
    except ProblemError as exc:
        return _security(request, login, db, settings, disable_problem=settle(db, exc))
    except FormError as problem:
        return _security(request, login, db, settings, disable_problem=problem)
    return redirect(request, SECURITY, flash="Two-factor authentication is off.", level="warning")


@router.post("/sessions/others/logout")
def end_other_sessions(
    request: Request, login: CurrentLogin, db: DbSession, meta: ClientMeta
) -> Response:
    logins.end_other_logins(db=db, user=login.user, keep_session=login.session_id, meta=meta)
    return redirect(request, SECURITY + "#sessions", flash="Your other sessions are logged out.")


@router.post("/sessions/{session_id}/logout")
def end_session(
    request: Request, session_id: uuid.UUID, login: CurrentLogin, db: DbSession, meta: ClientMeta
) -> Response:
    logins.end_login(db=db, user=login.user, session_id=session_id, meta=meta)
    if session_id == login.session_id:
        response = redirect(request, "/login", flash="You are logged out.")
        session.end(response)
        return response
    return redirect(request, SECURITY + "#sessions", flash="That session is logged out.")


_BROWSERS = (
    ("Edg/", "Edge"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
    ("python", "Python"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


def device_name(user_agent: str | None) -> str:
    """A short name for the device a login came from ("Chrome on Linux"), from its user
    agent; the full string is on the page too."""
    if not user_agent:
        return "Unknown device"
    browser = next((name for key, name in _BROWSERS if key in user_agent), None)
    system = next((name for key, name in _SYSTEMS if key in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or user_agent[:40]


def _profile(
    request: Request,
    login: PanelLogin,
    *,
    problem: FormError | None = None,
    password_problem: FormError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    user = login.user
    failed = problem or password_problem
    context = {
        "section": "account",
        "problem": problem,
        "password_problem": password_problem,
        "form": form
        or {
            "first_name": user.first_name or "",
            "last_name": user.last_name or "",
            "phone": user.phone or "",
        },
    }
    return render(
        request,
        "account/profile.html",
        context,
        status=failed.status if failed else 200,
        headers=failed.headers if failed else None,
    )


def _security(
    request: Request, login: PanelLogin, db: Session, settings: AppSettings, **problems: Any
) -> Response:
    pending = two_factor.pending_setup(db=db, settings=settings, user=login.user)
    qr = None
    if pending is not None:
        qr = segno.make(pending.otpauth_uri, error="m").svg_data_uri(
            scale=5, border=2, dark="#000", light="#fff"
        )
    failed: FormError | None = next((p for p in problems.values() if p), None)
    context = {
        "section": "account",
        "pending": pending,
        "qr": qr,
        "sessions": logins.list_logins(db=db, user=login.user, current=login.session_id),
        "device_name": device_name,
        "setup_problem": None,
        "disable_problem": None,
        **problems,
    }
    return render(
        request,
        "account/security.html",
        context,
        status=failed.status if failed else 200,
        headers=failed.headers if failed else None,
    )
