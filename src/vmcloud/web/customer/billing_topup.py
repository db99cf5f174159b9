"""Topping up from the panel (``/billing/top-up``): the API's own top-up (limits and providers
from the site's settings, once per form nonce), then the provider's checkout."""

from __future__ import annotations

import json
import uuid
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts.errors import EmailUnverifiedError
from vmcloud.accounts.models import User
from vmcloud.billing.payments import api as payments_api
from vmcloud.billing.payments import service as payments
from vmcloud.billing.payments.schemas import TopUpCreate, TopUpRead
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ProblemError
from vmcloud.core.idempotency import MAX_KEY_LENGTH
from vmcloud.db.session import DbSession
from vmcloud.web.forms import FormError, check_nonce, parse, settle
from vmcloud.web.render import redirect, render
from vmcloud.web.session import PanelUser

router = APIRouter(include_in_schema=False)
SANDBOX_PATH = "/billing/sandbox/"


def _form(
    request: Request,
    db: Session,
    form: dict[str, str],
    problem: FormError | None = None,
) -> Response:
    terms = payments.top_up_terms(db=db)
    status = problem.status if problem else 200
    context = {"form": form, "problem": problem, "terms": terms, "section": "billing"}
    return render(request, "billing/top_up.html", context, status=status)


@router.get("/billing/top-up")
def top_up_page(request: Request, db: DbSession, user: PanelUser, amount: str = "") -> Response:
    terms = payments.top_up_terms(db=db)
    form = {"amount": amount[:32], "provider": terms.providers[0] if terms.providers else ""}
    return _form(request, db, form)


def _require_verified(user: User) -> None:
    if not user.email_verified:
        raise EmailUnverifiedError(
            "Confirm your email address first: the link is in the message we sent you."
        )


@router.post("/billing/top-up")
def top_up(
    request: Request,
    db: DbSession,
    user: PanelUser,
    settings: AppSettings,
    amount: Annotated[str, Form(max_length=32)] = "",
    provider: Annotated[str, Form(max_length=50)] = "",
    nonce: Annotated[str, Form(max_length=MAX_KEY_LENGTH)] = "",
) -> Response:
    form = {"amount": amount, "provider": provider}
    try:
        _require_verified(user)
        body = parse(TopUpCreate, form)
        made = payments_api.top_up_once(
            db=db, user=user, body=body, key=check_nonce(nonce), settings=settings
        )
    except ProblemError as exc:
        return _form(request, db, form, settle(db, exc))
    except FormError as problem:
        return _form(request, db, form, problem)
    if isinstance(made, TopUpRead):
        checkout_url = made.checkout_url
    else:  # the same form sent again: the first top-up's checkout
        checkout_url = json.loads(bytes(made.body))["checkout_url"]
    return _to_checkout(request, checkout_url)


@router.get("/billing/top-ups/{entry_id}/checkout")
def resume_checkout(
    request: Request, entry_id: uuid.UUID, db: DbSession, user: PanelUser
) -> Response:
    """Back to the checkout of a top-up still pending."""
    return _to_checkout(request, payments.own_checkout(db=db, user=user, entry_id=entry_id))


def _to_checkout(request: Request, checkout_url: str) -> Response:
    path = urlsplit(checkout_url).path
    if path.startswith(SANDBOX_PATH):
        # The sandbox's checkout is a page of this site, whatever its public address.
        return redirect(request, path)
    # Another site: the page's CSP (form-action 'self') would stop a redirect answering this
    # form, so a page of ours sends the browser on.
    return render(
        request, "billing/checkout.html", {"checkout_url": checkout_url, "section": "billing"}
    )
