"""``/admin/tickets``: the staff's ticket queue (filters, age, customer and instance), and
``/admin/tickets/{id}``: one ticket with its whole thread, internal notes marked, the work
forms (assign, status, priority) and the reply or note form with canned replies. Both pages
are live: a staff stream hears every ticket event, notes' included. The forms' routes are in
``tickets_actions``. Routes call the API's services (``support.service``); any staff member
may read and work every ticket, as the API allows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import Path, Query, Request
from fastapi.routing import APIRouter
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from vmcloud.accounts.models import User
from vmcloud.compute import service as compute
from vmcloud.core.clock import utcnow
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import InvalidInputError, ProblemError
from vmcloud.core.pagination import PageParams
from vmcloud.db.session import DbSession
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CANNED_REPLIES
from vmcloud.support import attachments, service, transfer
from vmcloud.support.models import SupportTicket
from vmcloud.support.schemas import Priority, Status
from vmcloud.support.storage import storage_for
from vmcloud.web.admin import access
from vmcloud.web.admin.access import StaffPanelUser
from vmcloud.web.customer.support import ticket_of_login
from vmcloud.web.forms import FormError
from vmcloud.web.render import csrf_token, fragment
from vmcloud.web.session import cookie_secret, login_of

router = APIRouter(include_in_schema=False)
Cursor = Annotated[str | None, Query(max_length=1024)]
# "open work" (the default: open, in progress, waiting), "any", or one status.
StatusFilter = Literal["open-work", "any"] | Status
# "" any priority (what the filter form sends for "Any").
PriorityFilter = Literal[""] | Priority
# "" anyone, "none" unassigned, "me", or a staff member's id.
Assignee = Annotated[str, Query(max_length=36)]


def age(value: datetime | None, now: datetime) -> str:
    """How long ago, in the largest whole unit: "45 min", "3 h", "12 d"."""
    if value is None:
        return "—"
    minutes = max(int((now - value).total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def _assignee(value: str, user_id: uuid.UUID) -> tuple[uuid.UUID | None, bool]:
    """(assigned_to, unassigned) for the queue's assignee filter, or 422."""
    if value in ("", "none"):
        return None, value == "none"
    if value == "me":
        return user_id, False
    try:
        return uuid.UUID(value), False
    except ValueError:
        raise InvalidInputError(
            "The assignee filter is not valid.",
            errors=[{"field": "assignee", "message": "anyone, none, me or a staff id"}],
        ) from None


def queue_view(
    db: Session,
    user: User,
    *,
    status: StatusFilter,
    priority: PriorityFilter,
    assignee: str,
    cursor: str | None,
) -> dict[str, Any]:
    assigned_to, unassigned = _assignee(assignee, user.id)
    tickets, next_cursor = service.queue(
        db=db,
        params=PageParams(cursor=cursor),
        status=status if status not in ("open-work", "any") else None,
        statuses=service.OPEN_WORK if status == "open-work" else (),
        priority=priority or None,
        assigned_to=assigned_to,
        unassigned=unassigned,
    )
    people = [t.user_id for t in tickets] + [t.assigned_to for t in tickets]
    instances = compute.instance_names(db=db, instance_ids=[t.instance_id for t in tickets])
    filters = {"status": status, "priority": priority, "assignee": assignee}
    return {
        "tickets": tickets,
        "names": service.usernames(db=db, user_ids=people),
        "instance_names": instances,
        "next_cursor": next_cursor,
        "cursor": cursor,
        "filters": filters,
        "filter_query": urlencode(filters),
        "age": age,
        "now": utcnow(),
    }


@router.get("/admin/tickets")
def queue_page(
    request: Request,
    db: DbSession,
    user: StaffPanelUser,
    status: StatusFilter = "open-work",
    priority: PriorityFilter = "",
    assignee: Assignee = "",
    cursor: Cursor = None,
) -> Response:
    view = queue_view(db, user, status=status, priority=priority, assignee=assignee, cursor=cursor)
    context = {**view, "staff_members": service.active_staff(db=db), "me": user}
    return access.page(request, "admin/tickets/list.html", user, context, area="tickets")


def _live_queue(db: Session, raw: str | None, **query: Any) -> str | None:
    login = login_of(db, raw)
    if login is None:
        return None
    try:
        view = queue_view(db, login.user, **query)
    except ProblemError:
        return None
    return fragment("admin/tickets/_queue.html", oob=True, **view)


@router.get("/admin/tickets/stream")
async def queue_stream(
    request: Request,
    user: StaffPanelUser,
    status: StatusFilter = "open-work",
    priority: PriorityFilter = "",
    assignee: Assignee = "",
    cursor: Cursor = None,
) -> Response:
    raw = cookie_secret(request)
    query = {"status": status, "priority": priority, "assignee": assignee, "cursor": cursor}
    return await access.stream(
        request,
        resync=lambda db: _live_queue(db, raw, **query),
        render=lambda db, event: (
            _live_queue(db, raw, **query) if event["kind"] == "ticket" else None
        ),
    )


# -- one ticket ---------------------------------------------------------------------------------


def ticket_view(db: Session, ticket: SupportTicket, viewer: User) -> dict[str, Any]:
    """What the ticket page's live regions show: the whole thread, notes included."""
    messages = service.messages_of(db=db, ticket=ticket, staff=True)
    roles = service.author_roles(db=db, messages=messages)
    people = [ticket.user_id, ticket.assigned_to, *(m.user_id for m in messages)]
    names = compute.instance_names(db=db, instance_ids=[ticket.instance_id])
    return {
        "ticket": ticket,
        "messages": [(m, roles.get(m.user_id, "customer")) for m in messages],
        "names": service.usernames(db=db, user_ids=people),
        "instance_name": names.get(ticket.instance_id) if ticket.instance_id else None,
        "transitions": service.TRANSITIONS[ticket.status or "open"],
        "staff_members": service.active_staff(db=db),
        "me": viewer,
        "age": age,
        "now": utcnow(),
    }


def ticket_page(
    request: Request,
    db: Session,
    ticket: SupportTicket,
    user: User,
    problem: FormError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    context = {
        **ticket_view(db, ticket, user),
        "canned": site_settings.get(db, CANNED_REPLIES),
        "limits": attachments.limits(db),
        "problem": problem,
        "form": form or {},
    }
    return access.page(
        request,
        "admin/tickets/detail.html",
        user,
        context,
        area="tickets",
        status=problem.status if problem else 200,
    )


@router.get("/admin/tickets/{ticket_id}")
def ticket_detail(
    request: Request, ticket_id: uuid.UUID, db: DbSession, user: StaffPanelUser
) -> Response:
    ticket = service.get_visible_ticket(db=db, ticket_id=ticket_id, user=user)
    return ticket_page(request, db, ticket, user)


def _live_ticket(db: Session, raw: str | None, ticket_id: uuid.UUID, csrf: str) -> str | None:
    found = ticket_of_login(db, raw, ticket_id)
    if found is None:
        return None
    view = ticket_view(db, *found)
    return fragment("admin/tickets/_live.html", oob=True, csrf=csrf, **view)


@router.get("/admin/tickets/{ticket_id}/stream")
async def ticket_stream(
    request: Request, ticket_id: uuid.UUID, db: DbSession, user: StaffPanelUser
) -> Response:
    # 404 before the stream opens on a ticket that does not exist (a query: off the loop).
    await run_in_threadpool(service.get_visible_ticket, db=db, ticket_id=ticket_id, user=user)
    raw, csrf, wanted = cookie_secret(request), csrf_token(request), str(ticket_id)
    return await access.stream(
        request,
        resync=lambda db: _live_ticket(db, raw, ticket_id, csrf),
        render=lambda db, event: (
            _live_ticket(db, raw, ticket_id, csrf)
            if event["kind"] == "ticket" and event.get("id") == wanted
            else None
        ),
    )


@router.get("/admin/tickets/{ticket_id}/attachments/{attachment_id}")
def attachment(
    ticket_id: uuid.UUID,
    attachment_id: Annotated[str, Path(max_length=64)],
    db: DbSession,
    user: StaffPanelUser,
    settings: AppSettings,
) -> Response:
    """A file of any message of the ticket, a note's too (staff only), as the API serves it."""
    ticket = service.get_visible_ticket(db=db, ticket_id=ticket_id, user=user)
    meta, data = service.attachment_of(
        db=db, ticket=ticket, attachment_id=attachment_id, staff=True, storage=storage_for(settings)
    )
    return transfer.download(meta, data)
