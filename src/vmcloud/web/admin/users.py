"""``/admin/users``: find users (search, role, status) and open one: profile, balance,
instances, subscriptions, transactions, tickets and (admins) the audit trail, with balance and
instance statuses live. The actions are in ``users_actions``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import admin as accounts
from vmcloud.accounts import logins
from vmcloud.accounts.deps import is_admin
from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.billing import service as billing
from vmcloud.billing import spending
from vmcloud.billing import subscriptions as subs
from vmcloud.compute import service as compute
from vmcloud.core.pagination import PageParams
from vmcloud.db.session import DbSession
from vmcloud.support import service as support
from vmcloud.web.admin import access
from vmcloud.web.admin.access import StaffPanelUser
from vmcloud.web.forms import FormError
from vmcloud.web.render import fragment

router = APIRouter(include_in_schema=False)

ROLES = ("customer", "support", "admin")
STATUSES = ("active", "suspended", "banned", "closed")
Cursor = Annotated[str | None, Query(max_length=1024)]
# What the page shows of each kind of list; the full lists are on their own staff pages.
SHOWN = 20
# Events about the user that change the page's live parts.
LIVE_KINDS = ("balance", "instance", "subscription")
LIVE_PARTS = (
    "admin/users/_balance.html",
    "admin/users/_instances.html",
    "admin/users/_subscriptions.html",
    "admin/users/_transactions.html",
)


@router.get("/admin/users")
def users_page(
    request: Request,
    db: DbSession,
    user: StaffPanelUser,
    q: Annotated[str, Query(max_length=255)] = "",
    role: Literal["", "customer", "support", "admin"] = "",
    status: Literal["", "active", "suspended", "banned", "closed"] = "",
    cursor: Cursor = None,
) -> Response:
    found, next_cursor = accounts.list_users(
        db=db,
        params=PageParams(cursor=cursor),
        q=q.strip() or None,
        role=role or None,
        status=status or None,
    )
    filters = {"q": q, "role": role, "status": status}
    context = {
        "users": found,
        "next_cursor": next_cursor,
        "cursor": cursor,
        "filters": filters,
        "query": {k: v for k, v in filters.items() if v},
        "roles": ROLES,
        "statuses": STATUSES,
    }
    return access.page(request, "admin/users/list.html", user, context, area="users")


def live_context(db: Session, target: User) -> dict[str, Any]:
    """What the page's live parts show: balance, instances, subscriptions, transactions."""
    balance, currency = billing.balance_of(db=db, user=target)
    first = PageParams(limit=SHOWN)
    sub_rows, _ = subs.list_subscriptions(
        db=db, params=first, user_id=target.id, past_due_first=True
    )
    names = compute.instance_names(db=db, instance_ids=[s.instance_id for s in sub_rows])
    entries, more_entries = billing.list_all_transactions(db=db, params=first, user_id=target.id)
    return {
        "target": target,
        "balance": balance,
        "currency": currency,
        "instances": compute.list_user_instances(db=db, user_id=target.id, limit=SHOWN),
        "subscriptions": [
            {
                "sub": s,
                "name": names.get(s.instance_id) if s.instance_id else None,
                "grace_end": spending.grace_end(db=db, sub=s),
            }
            for s in sub_rows
        ],
        "entries": entries,
        "more_entries": more_entries is not None,
    }


def detail_context(
    db: Session, viewer: User, user_id: uuid.UUID, problem: FormError | None = None
) -> dict[str, Any]:
    target = accounts.get_user(db=db, user_id=user_id)
    tickets, more_tickets = support.list_own(db=db, user=target, params=PageParams(limit=SHOWN))
    return {
        **live_context(db, target),
        "tickets": tickets,
        "more_tickets": more_tickets is not None,
        "sessions": len(logins.list_logins(db=db, user=target, current=None)),
        # The audit trail is for admins, as the API's audit log is.
        "trail": audit.trail_of_user(db, user_id=target.id) if is_admin(viewer) else None,
        "roles": ROLES,
        "statuses": STATUSES,
        "problem": problem,
        "stream_url": f"/admin/users/{target.id}/stream",
    }


def detail_page(
    request: Request,
    db: Session,
    viewer: User,
    user_id: uuid.UUID,
    problem: FormError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    context = {**detail_context(db, viewer, user_id, problem), "form": form or {}}
    status = problem.status if problem else 200
    return access.page(
        request, "admin/users/detail.html", viewer, context, area="users", status=status
    )


@router.get("/admin/users/{user_id}")
def user_page(
    request: Request, user_id: uuid.UUID, db: DbSession, user: StaffPanelUser
) -> Response:
    return detail_page(request, db, user, user_id)


def live_parts(db: Session, user_id: uuid.UUID) -> str | None:
    target = db.get(User, user_id)
    if target is None:
        return None
    context = live_context(db, target)
    return "".join(fragment(name, oob=True, **context) for name in LIVE_PARTS)


@router.get("/admin/users/{user_id}/stream")
async def user_stream(
    request: Request, user_id: uuid.UUID, db: DbSession, user: StaffPanelUser
) -> Response:
    accounts.get_user(db=db, user_id=user_id)  # 404 for no such user
    wanted = str(user_id)
    return await access.stream(
        request,
        resync=lambda s: live_parts(s, user_id),
        render=lambda s, event: (
            live_parts(s, user_id)
            if event.get("user") == wanted and event.get("kind") in LIVE_KINDS
            else None
        ),
    )
