"""The subscriptions page (``/billing/subscriptions``): the API's list of the customer's
subscriptions (same order and pages) with their instances and grace deadlines, live; and
cancelling renewal through the API's own flow."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts.models import User
from vmcloud.billing import flows, spending
from vmcloud.billing import subscriptions as subs
from vmcloud.billing.models import Subscription
from vmcloud.compute import service as compute
from vmcloud.core.errors import ProblemError
from vmcloud.core.pagination import PageParams
from vmcloud.db.session import DbSession
from vmcloud.web import live
from vmcloud.web.forms import FormError, settle
from vmcloud.web.render import csrf_token, fragment, redirect, render
from vmcloud.web.session import PanelUser, cookie_secret, login_of

router = APIRouter(include_in_schema=False)
Cursor = Annotated[str | None, Query(max_length=1024)]
PAGE = "/billing/subscriptions"


def listing(db: Session, user: User, cursor: str | None) -> dict[str, Any]:
    items, next_cursor = subs.list_subscriptions(
        db=db, params=PageParams(cursor=cursor), user_id=user.id
    )
    names = compute.instance_names(db=db, instance_ids=[s.instance_id for s in items])
    rows = [
        {
            "sub": s,
            "name": names.get(s.instance_id) if s.instance_id else None,
            "grace_end": spending.grace_end(db=db, sub=s),
        }
        for s in items
    ]
    return {"rows": rows, "next_cursor": next_cursor, "cursor": cursor}


def _page(
    request: Request, db: Session, user: User, cursor: str | None, problem: FormError | None = None
) -> Response:
    context = {**listing(db, user, cursor), "problem": problem, "section": "billing"}
    status = problem.status if problem else 200
    return render(request, "billing/subscriptions.html", context, status=status)


@router.get(PAGE)
def subscriptions_page(
    request: Request, db: DbSession, user: PanelUser, cursor: Cursor = None
) -> Response:
    return _page(request, db, user, cursor)


def live_subscriptions(
    db: Session, raw: str | None, cursor: str | None, csrf: str = ""
) -> str | None:
    login = login_of(db, raw)
    if login is None:
        return None
    try:
        context = listing(db, login.user, cursor)
    except ProblemError:
        return None
    # The rows carry forms: the same CSRF token as the page's (the cookie's).
    return fragment("billing/_subscriptions.html", oob=True, csrf=csrf, **context)


@router.get(PAGE + "/stream")
async def subscriptions_stream(request: Request, cursor: Cursor = None) -> Response:
    raw = cookie_secret(request)
    csrf = csrf_token(request)
    return await live.stream(
        request,
        resync=lambda db: live_subscriptions(db, raw, cursor, csrf),
        render=lambda db, event: (
            live_subscriptions(db, raw, cursor, csrf) if event["kind"] == "subscription" else None
        ),
    )


def _confirmation_needed(sub: Subscription, name: str | None, typed: str) -> FormError | None:
    """Cancelling a past-due subscription deletes its instance now: its name must be typed."""
    if sub.status != "past_due" or sub.instance_id is None or typed == (name or ""):
        return None
    return FormError(
        fields={f"confirm-{sub.id}": "Type the instance's name to confirm."},
        message="Cancelling a past-due subscription deletes its instance now: type its name.",
    )


@router.post(PAGE + "/{subscription_id}/cancel")
def cancel_renewal(
    request: Request,
    subscription_id: uuid.UUID,
    db: DbSession,
    user: PanelUser,
    confirm: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    try:
        sub = subs.get_changeable(db=db, subscription_id=subscription_id, user=user)
        name = compute.instance_names(db=db, instance_ids=[sub.instance_id]).get(
            sub.instance_id  # type: ignore[arg-type]
        )
        problem = _confirmation_needed(sub, name, confirm)
        if problem is not None:
            db.rollback()
            return _page(request, db, user, None, problem)
        was_past_due = sub.status == "past_due"
        flows.cancel_subscription(db=db, sub=sub)
    except ProblemError as exc:
        if exc.status == 404:
            raise
        return _page(request, db, user, None, settle(db, exc))
    what = name or "the subscription"
    if was_past_due:
        message = f"Subscription ended: {what} is being deleted."
    else:
        message = f"Renewal cancelled: {what} runs until {sub.period_end:%Y-%m-%d %H:%M} UTC."
    return redirect(request, PAGE, flash=message)
