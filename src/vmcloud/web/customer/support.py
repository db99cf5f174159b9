"""The customer's support pages: ``/support`` (tickets, live), ``/support/new`` (category from
the settings, an instance of one's own, files) and ``/support/{id}`` (the public thread with
its attachments, live; reply with files, close, rate once). Routes call the API's services
with the API's loaders (another customer's ticket is 404); the thread never holds internal
notes, even for staff (their pages are elsewhere). Forms with files are multipart, their
CSRF token first (``web.security``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.routing import APIRouter
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.responses import Response

from vmcloud.accounts.models import User
from vmcloud.compute import service as compute
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ProblemError
from vmcloud.core.pagination import PageParams
from vmcloud.db.session import DbSession
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import TICKET_CATEGORIES
from vmcloud.support import attachments, service, transfer
from vmcloud.support.attachments import Upload
from vmcloud.support.models import SupportTicket
from vmcloud.support.storage import storage_for
from vmcloud.web import live
from vmcloud.web.forms import FormError
from vmcloud.web.render import csrf_token, fragment, render
from vmcloud.web.session import LoginRequiredError, PanelUser, cookie_secret, login_of

router = APIRouter(include_in_schema=False)
Cursor = Annotated[str | None, Query(max_length=1024)]


# -- reading ------------------------------------------------------------------------------------


def listing(db: Session, user: User, cursor: str | None) -> dict[str, Any]:
    tickets, next_cursor = service.list_own(db=db, user=user, params=PageParams(cursor=cursor))
    return {"tickets": tickets, "next_cursor": next_cursor, "cursor": cursor}


def thread(db: Session, ticket: SupportTicket) -> dict[str, Any]:
    """What the ticket page shows and its stream re-renders: the public messages only."""
    messages = service.messages_of(db=db, ticket=ticket, staff=False)
    roles = service.author_roles(db=db, messages=messages)
    names = compute.instance_names(db=db, instance_ids=[ticket.instance_id])
    return {
        "ticket": ticket,
        "messages": [(m, roles.get(m.user_id, "customer")) for m in messages],
        "instance_name": names.get(ticket.instance_id) if ticket.instance_id else None,
    }


def new_form_choices(db: Session, user: User) -> dict[str, Any]:
    return {
        "categories": site_settings.get(db, TICKET_CATEGORIES),
        "instances": compute.list_user_instances(db=db, user_id=user.id),
        "limits": attachments.limits(db),
    }


# -- pages --------------------------------------------------------------------------------------


@router.get("/support")
def tickets_page(
    request: Request, db: DbSession, user: PanelUser, cursor: Cursor = None
) -> Response:
    return render(request, "support/list.html", {**listing(db, user, cursor), "section": "support"})


def live_list(db: Session, raw: str | None, cursor: str | None) -> str | None:
    login = login_of(db, raw)
    if login is None:
        return None
    try:
        context = listing(db, login.user, cursor)
    except ProblemError:
        return None
    return fragment("support/_list.html", oob=True, **context)


@router.get("/support/stream")
async def tickets_stream(request: Request, cursor: Cursor = None) -> Response:
    raw = cookie_secret(request)
    return await live.stream(
        request,
        resync=lambda db: live_list(db, raw, cursor),
        render=lambda db, event: live_list(db, raw, cursor) if event["kind"] == "ticket" else None,
    )


def ticket_page(
    request: Request,
    db: Session,
    ticket: SupportTicket,
    problem: FormError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    context = {
        **thread(db, ticket),
        "limits": attachments.limits(db),
        "section": "support",
        "problem": problem,
        "form": form or {},
    }
    status = problem.status if problem else 200
    headers = problem.headers if problem else None
    return render(request, "support/detail.html", context, status=status, headers=headers)


@router.get("/support/{ticket_id}")
def ticket_detail(
    request: Request, ticket_id: uuid.UUID, db: DbSession, user: PanelUser
) -> Response:
    ticket = service.get_visible_ticket(db=db, ticket_id=ticket_id, user=user)
    return ticket_page(request, db, ticket)


def ticket_of_login(
    db: Session, raw: str | None, ticket_id: uuid.UUID
) -> tuple[SupportTicket, User] | None:
    """The ticket and its viewer for a live stream, checked again on each event: None once
    the login has ended or the ticket is no longer theirs to see."""
    login = login_of(db, raw)
    if login is None:
        return None
    try:
        ticket = service.get_visible_ticket(db=db, ticket_id=ticket_id, user=login.user)
    except ProblemError:
        return None
    return ticket, login.user


def live_ticket(db: Session, raw: str | None, ticket_id: uuid.UUID, csrf: str) -> str | None:
    found = ticket_of_login(db, raw, ticket_id)
    if found is None:
        return None
    # The actions carry forms: the same CSRF token as the page's (the cookie's).
    return fragment("support/_live.html", oob=True, csrf=csrf, **thread(db, found[0]))


def _check_visible(request: Request, ticket_id: uuid.UUID) -> None:
    """404 before a stream opens on another user's ticket (the stream checks the login
    again)."""
    with request.app.state.session_factory() as db:
        login = login_of(db, cookie_secret(request))
        if login is None:
            raise LoginRequiredError()
        service.get_visible_ticket(db=db, ticket_id=ticket_id, user=login.user)


@router.get("/support/{ticket_id}/stream")
async def ticket_stream(request: Request, ticket_id: uuid.UUID) -> Response:
    await live.read_db(request, _check_visible, request, ticket_id)
    raw, csrf, wanted = cookie_secret(request), csrf_token(request), str(ticket_id)
    return await live.stream(
        request,
        resync=lambda db: live_ticket(db, raw, ticket_id, csrf),
        render=lambda db, event: (
            live_ticket(db, raw, ticket_id, csrf)
            if event["kind"] == "ticket" and event.get("id") == wanted
            else None
        ),
        follows=("ticket", ticket_id),
    )


@router.get("/support/{ticket_id}/attachments/{attachment_id}")
def attachment(
    ticket_id: uuid.UUID,
    attachment_id: Annotated[str, Path(max_length=64)],
    db: DbSession,
    user: PanelUser,
    settings: AppSettings,
) -> Response:
    ticket = service.get_visible_ticket(db=db, ticket_id=ticket_id, user=user)
    meta, data = service.attachment_of(
        db=db,
        ticket=ticket,
        attachment_id=attachment_id,
        staff=False,
        storage=storage_for(settings),
    )
    return transfer.download(meta, data)


# -- form input ---------------------------------------------------------------------------------


@dataclass
class Posted:
    """A support form as posted: its text fields, its files, and what was wrong with it as a
    whole (too many files, a malformed body) before any service saw it."""

    fields: dict[str, str] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    problem: FormError | None = None

    def text(self, name: str) -> str:
        value = self.fields.get(name, "")
        return value if isinstance(value, str) else ""


async def _posted(request: Request, user: PanelUser) -> Posted:
    # The caller is known before any of the body is read.
    return await read_posted(request)


async def read_posted(request: Request) -> Posted:
    """A support form (the customer's or the staff's), read once the caller is known."""
    fields: dict[str, Any] = {}
    try:
        fields, uploads = await transfer.read_form(request, skip_unchosen=True, fields=fields)
    except ProblemError as exc:
        return Posted(fields=fields, problem=FormError.from_problem(exc))
    except HTTPException as exc:  # a body the form parser refused
        return Posted(problem=FormError(message=str(exc.detail), status=400))
    return Posted(fields=fields, uploads=uploads)


PostedForm = Annotated[Posted, Depends(_posted)]
