"""Signing up, confirming the email address and resetting a forgotten password:
``/signup``, ``/verify-email``, ``/forgot-password``, ``/reset-password``.

The links in account emails open pages that change nothing (mail scanners open links too);
the page's button posts the token. Asking for a reset or a new verification link answers the
same whether or not the address has an account.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import service
from vmcloud.accounts.deps import Limiter
from vmcloud.accounts.schemas import (
    EmailRequest,
    PasswordResetConfirm,
    RegisterRequest,
    VerifyEmailRequest,
)
from vmcloud.accounts.service import RegistrationClosedError
from vmcloud.core.errors import ProblemError
from vmcloud.core.net import ClientMeta
from vmcloud.db.session import DbSession
from vmcloud.web import session
from vmcloud.web.customer.auth import registration_open
from vmcloud.web.forms import FormError, parse, settle
from vmcloud.web.render import redirect, render
from vmcloud.web.session import LoginRequiredError, PanelLogin

router = APIRouter(include_in_schema=False)

Text = Annotated[str, Form(max_length=1024)]
SENT = "If {what} belongs to an account, we have sent it a link. It may take a minute to arrive."
CLOSED = "New accounts cannot be created at the moment."


@router.get("/signup")
def signup_page(request: Request, db: DbSession) -> Response:
    if not registration_open(db):
        return render(request, "auth/signup_closed.html", {"detail": CLOSED}, status=403)
    return render(request, "auth/signup.html")


@router.post("/signup")
def signup(
    request: Request,
    db: DbSession,
    limiter: Limiter,
    meta: ClientMeta,
    email: Annotated[str, Form(max_length=255)] = "",
    username: Annotated[str, Form(max_length=100)] = "",
    password: Text = "",
) -> Response:
    form = {"email": email, "username": username}
    try:
        body = parse(RegisterRequest, {"email": email, "username": username, "password": password})
        service.register(db=db, limiter=limiter, body=body, meta=meta)
    except RegistrationClosedError as exc:
        settle(db, exc)
        return render(request, "auth/signup_closed.html", {"detail": exc.detail}, status=403)
    except ProblemError as exc:
        return _form(request, "auth/signup.html", form, settle(db, exc))
    except FormError as problem:
        return _form(request, "auth/signup.html", form, problem)
    return redirect(request, "/signup/check-email", flash="Your account is created.")


@router.get("/signup/check-email")
def check_email_page(request: Request) -> Response:
    return render(request, "auth/check_email.html")


@router.post("/verify-email/resend")
def resend_verification(
    request: Request,
    db: DbSession,
    limiter: Limiter,
    meta: ClientMeta,
    email: Annotated[str, Form(max_length=255)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """A new verification link: for the address typed, or the logged-in user's own (who goes
    back to ``next``, by default the account page)."""
    login = _optional_login(request, db)
    if login is not None and not email:
        email = login.user.email
    try:
        body = parse(EmailRequest, {"email": email})
        service.resend_verification(db=db, limiter=limiter, email=body.email, meta=meta)
    except ProblemError as exc:
        return _form(request, "auth/check_email.html", {"email": email}, settle(db, exc))
    except FormError as problem:
        return _form(request, "auth/check_email.html", {"email": email}, problem)
    target = "/signup/check-email"
    if login is not None:
        target = session.safe_next(next) if next else "/account"
    return redirect(request, target, flash=SENT.format(what=email), level="info")


@router.get("/verify-email")
def verify_email_page(request: Request, token: str = "") -> Response:
    return render(request, "auth/verify_email.html", {"token": token[:200]})


@router.post("/verify-email")
def verify_email(
    request: Request,
    db: DbSession,
    limiter: Limiter,
    meta: ClientMeta,
    token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        body = parse(VerifyEmailRequest, {"token": token})
        service.verify_email(db=db, limiter=limiter, token=body.token, meta=meta)
    except ProblemError as exc:
        return _form(request, "auth/verify_email.html", {"token": token}, settle(db, exc))
    except FormError as problem:
        problem.message = "This verification link is not complete; open the link in the email."
        return _form(request, "auth/verify_email.html", {"token": token}, problem)
    target = "/account" if session.cookie_secret(request) else "/login"
    return redirect(request, target, flash="Your email address is confirmed.")


@router.get("/forgot-password")
def forgot_password_page(request: Request) -> Response:
    return render(request, "auth/forgot_password.html")


@router.post("/forgot-password")
def forgot_password(
    request: Request,
    db: DbSession,
    limiter: Limiter,
    meta: ClientMeta,
    email: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    form = {"email": email}
    try:
        body = parse(EmailRequest, {"email": email})
        service.request_password_reset(db=db, limiter=limiter, email=body.email, meta=meta)
    except ProblemError as exc:
        return _form(request, "auth/forgot_password.html", form, settle(db, exc))
    except FormError as problem:
        return _form(request, "auth/forgot_password.html", form, problem)
    return redirect(request, "/login", flash=SENT.format(what=email), level="info")


@router.get("/reset-password")
def reset_password_page(request: Request, token: str = "") -> Response:
    return render(request, "auth/reset_password.html", {"token": token[:200]})


@router.post("/reset-password")
def reset_password(
    request: Request,
    db: DbSession,
    limiter: Limiter,
    meta: ClientMeta,
    token: Annotated[str, Form(max_length=200)] = "",
    new_password: Text = "",
) -> Response:
    context = {"token": token}
    try:
        body = parse(PasswordResetConfirm, {"token": token, "new_password": new_password})
        service.confirm_password_reset(
            db=db, limiter=limiter, token=body.token, new_password=body.new_password, meta=meta
        )
    except ProblemError as exc:
        return _form(request, "auth/reset_password.html", context, settle(db, exc))
    except FormError as problem:
        return _form(request, "auth/reset_password.html", context, problem)
    response = redirect(
        request, "/login", flash="Your password is changed. Log in with your new password."
    )
    session.end(response)
    return response


def _optional_login(request: Request, db: Session) -> PanelLogin | None:
    if session.cookie_secret(request) is None:
        return None
    try:
        return session.current_login(request, db)
    except LoginRequiredError:
        return None


def _form(request: Request, template: str, form: dict[str, str], problem: FormError) -> Response:
    return render(
        request,
        template,
        {"form": form, "token": form.get("token", ""), "problem": problem},
        status=problem.status,
        headers=problem.headers,
    )
