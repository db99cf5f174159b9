"""``/admin/subscriptions``: every subscription, past-due ones first with their grace
deadline, each row leading to its customer's page; live as subscriptions change state."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import admin as accounts
from vmcloud.billing import spending
from vmcloud.billing import subscriptions as subs
from vmcloud.billing.models import SUBSCRIPTION_STATUSES
from vmcloud.compute import service as compute
from vmcloud.core.errors import ProblemError
from vmcloud.core.pagination import PageParams
from vmcloud.db.session import DbSession
from vmcloud.web.admin import access
from vmcloud.web.admin.access import StaffPanelUser
from vmcloud.web.render import fragment

router = APIRouter(include_in_schema=False)
PAGE = "/admin/subscriptions"
Status = Literal["", "active", "past_due", "cancelled", "expired"]
Cursor = Annotated[str | None, Query(max_length=1024)]


def listing(db: Session, status: str, cursor: str | None) -> dict[str, Any]:
    """One page of the API's staff list in its past-due-first order (a bad cursor is 422)."""
    items, next_cursor = subs.list_subscriptions(
        db=db, params=PageParams(cursor=cursor), status=status or None, past_due_first=True
    )
    names = compute.instance_names(db=db, instance_ids=[s.instance_id for s in items])
    emails = accounts.emails_of(db=db, user_ids=[s.user_id for s in items])
    rows = [
        {
            "sub": s,
            "name": names.get(s.instance_id) if s.instance_id else None,
            "email": emails.get(s.user_id, str(s.user_id)),
            "grace_end": spending.grace_end(db=db, sub=s),
        }
        for s in items
    ]
    return {"rows": rows, "next_cursor": next_cursor, "cursor": cursor, "status": status}


@router.get(PAGE)
def subscriptions_page(
    request: Request,
    db: DbSession,
    user: StaffPanelUser,
    status: Status = "",
    cursor: Cursor = None,
) -> Response:
    context = {**listing(db, status, cursor), "statuses": SUBSCRIPTION_STATUSES}
    return access.page(request, "admin/subscriptions.html", user, context, area="subscriptions")


def live_list(db: Session, status: str, cursor: str | None) -> str | None:
    try:
        context = listing(db, status, cursor)
    except ProblemError:  # a cursor the page itself refused
        return None
    return fragment("admin/_subscriptions.html", oob=True, **context)


@router.get(PAGE + "/stream")
async def subscriptions_stream(
    request: Request, user: StaffPanelUser, status: Status = "", cursor: Cursor = None
) -> Response:
    return await access.stream(
        request,
        resync=lambda db: live_list(db, status, cursor),
        redraw_on=lambda event: event.get("kind") == "subscription",
    )
