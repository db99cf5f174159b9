"""The staff ticket page's forms: work the ticket (assign, status, priority: the API's
``PATCH /admin/tickets/{id}``) and write to it (a reply to the customer or an internal note,
with files and canned replies: the API's ``POST /tickets/{id}/messages``). Any staff member
may, as in the API. A refusal re-renders the page with the service's message and status and
changes nothing (``forms.settle``); a double submit of a message posts it once (the form's
nonce is its idempotency key)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRouter
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts.models import User
from vmcloud.core import idempotency
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ProblemError
from vmcloud.db.session import DbSession
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CANNED_REPLIES
from vmcloud.support import service
from vmcloud.support.schemas import (
    MessageCreate,
    StaffMessageRead,
    TicketAdminUpdate,
    message_view,
)
from vmcloud.support.storage import storage_for
from vmcloud.web.admin.access import StaffPanelUser
from vmcloud.web.admin.tickets import ticket_page
from vmcloud.web.customer.support import Posted, read_posted
from vmcloud.web.forms import FormError, check_nonce, parse, settle
from vmcloud.web.render import redirect

router = APIRouter(include_in_schema=False)


async def _posted(request: Request, user: StaffPanelUser) -> Posted:
    # Staff only, checked before any of the body is read.
    return await read_posted(request)


StaffForm = Annotated[Posted, Depends(_posted)]


def _refused(
    request: Request,
    db: Session,
    ticket_id: uuid.UUID,
    user: User,
    problem: FormError,
    form: dict[str, str] | None = None,
) -> Response:
    """The ticket page again with what was wrong (the attempt was rolled back)."""
    ticket = service.get_visible_ticket(db=db, ticket_id=ticket_id, user=user)
    return ticket_page(request, db, ticket, user, problem, form)


def _update_body(posted: Posted, user: User) -> TicketAdminUpdate:
    """The fields the form sent: an empty status or priority leaves it; an empty assignee
    unassigns, ``me`` is the caller."""
    values: dict[str, Any] = {
        name: posted.text(name) for name in ("status", "priority") if posted.text(name)
    }
    if "assigned_to" in posted.fields:
        chosen = posted.text("assigned_to")
        values["assigned_to"] = str(user.id) if chosen == "me" else (chosen or None)
    return parse(TicketAdminUpdate, values)


@router.post("/admin/tickets/{ticket_id}/update")
def update(
    request: Request, ticket_id: uuid.UUID, db: DbSession, user: StaffPanelUser, posted: StaffForm
) -> Response:
    ticket = service.get_changeable_ticket(db=db, ticket_id=ticket_id, user=user)
    try:
        if posted.problem is not None:
            raise posted.problem
        body = _update_body(posted, user)
        service.update_ticket(db=db, ticket=ticket, body=body)
    except FormError as problem:
        db.rollback()
        return _refused(request, db, ticket_id, user, problem)
    except ProblemError as exc:
        return _refused(request, db, ticket_id, user, settle(db, exc))
    only_me = body.model_fields_set == {"assigned_to"} and body.assigned_to == user.id
    flash = "Assigned to you." if only_me else "Ticket updated."
    return redirect(request, f"/admin/tickets/{ticket_id}", flash=flash)


def _text(db: Session, message: str, canned: str) -> str:
    """What to send: the message typed, then the chosen canned reply's text (the page's script
    moves a chosen reply into the message; without the script, it is added here)."""
    typed = message.strip()
    if not canned:
        if not typed:
            raise FormError(
                fields={"message": "Write a message or choose a canned reply."},
                message="The message is empty.",
            )
        return typed
    for reply in site_settings.get(db, CANNED_REPLIES):
        if reply["title"] == canned:
            return f"{typed}\n\n{reply['body']}" if typed else reply["body"]
    raise FormError(
        fields={"canned": "This canned reply is no longer offered."},
        message="Choose another canned reply.",
    )


@router.post("/admin/tickets/{ticket_id}/messages")
def write(
    request: Request,
    ticket_id: uuid.UUID,
    db: DbSession,
    user: StaffPanelUser,
    posted: StaffForm,
    settings: AppSettings,
) -> Response:
    form = {"message": posted.text("message"), "canned": posted.text("canned")}
    kind = posted.text("kind")
    # The form was read before the ticket is loaded: its row lock is not held while a browser
    # sends its files.
    ticket = service.get_changeable_ticket(db=db, ticket_id=ticket_id, user=user)
    try:
        if posted.problem is not None:
            raise posted.problem
        nonce = check_nonce(posted.text("nonce"))
        if kind not in ("reply", "note"):  # never guessed: a note must not go out as a reply
            raise FormError(message="Choose whether to send a reply or add an internal note.")
        text = _text(db, form["message"], form["canned"])
        body = parse(MessageCreate, {"message": text, "is_internal": kind == "note"})
        sent = idempotency.once(
            db=db,
            user_id=user.id,
            key=f"panel:{nonce}",
            endpoint=f"POST /tickets/{ticket.id}/messages",
            body=body,
            status=201,
            produce=lambda: StaffMessageRead.model_validate(
                message_view(
                    service.add_message(
                        db=db,
                        ticket=ticket,
                        author=user,
                        body=body,
                        uploads=posted.uploads,
                        storage=storage_for(settings),
                    ),
                    "staff",
                    staff=True,
                )
            ),
        )
    except FormError as problem:
        db.rollback()
        return _refused(request, db, ticket_id, user, problem, form)
    except ProblemError as exc:
        return _refused(request, db, ticket_id, user, settle(db, exc), form)
    if not isinstance(sent, StaffMessageRead):
        flash = "That was sent already."
    else:
        flash = "Internal note added." if kind == "note" else "Reply sent to the customer."
    return redirect(request, f"/admin/tickets/{ticket_id}#thread-end", flash=flash)
