"""Routes: customers' tickets, and the staff queue."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from vmcloud.accounts.deps import CurrentUser, Limiter, StaffUser
from vmcloud.core.deps import AppSettings
from vmcloud.core.pagination import Page, PageQuery, page_of
from vmcloud.db.session import DbSession
from vmcloud.support import service, transfer
from vmcloud.support.attachments import Upload
from vmcloud.support.deps import ChangeableTicket, QueueTicket, VisibleTicket
from vmcloud.support.models import SupportTicket
from vmcloud.support.schemas import (
    MessageCreate,
    MessageRead,
    Priority,
    RatingCreate,
    StaffMessageRead,
    StaffTicketDetail,
    StaffTicketRead,
    Status,
    TicketAdminUpdate,
    TicketCreate,
    TicketDetail,
    TicketRead,
    message_view,
)
from vmcloud.support.storage import storage_for

router = APIRouter(prefix="/tickets", tags=["support"])
admin = APIRouter(prefix="/admin/tickets", tags=["admin: support"])

_FORM_BOOLEANS = {"true": True, "1": True, "on": True, "false": False, "0": False, "off": False}


async def _message_input(
    request: Request, caller: CurrentUser
) -> tuple[MessageCreate, list[Upload]]:
    """``{message, is_internal?}`` as JSON, or as multipart form fields with ``files``. The
    caller is authenticated before any of the body is read."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        try:
            return MessageCreate.model_validate_json(await request.body()), []
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            ) from None
    fields, uploads = await transfer.read_form(request)
    if "is_internal" in fields:
        # Form values are text: only these words are booleans; anything else fails validation.
        word = fields["is_internal"].strip().lower()
        fields["is_internal"] = _FORM_BOOLEANS.get(word, fields["is_internal"])
    try:
        return MessageCreate.model_validate_json(json.dumps(fields)), uploads
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None


MessageInput = Annotated[tuple[MessageCreate, list[Upload]], Depends(_message_input)]


def _detail(db: DbSession, ticket: SupportTicket, staff: bool) -> dict[str, Any]:
    messages = service.messages_of(db=db, ticket=ticket, staff=staff)
    roles = service.author_roles(db=db, messages=messages)
    model = StaffTicketDetail if staff else TicketDetail
    base = (StaffTicketRead if staff else TicketRead).model_validate(ticket).model_dump()
    base["messages"] = [
        message_view(m, roles.get(m.user_id, "customer"), staff=staff) for m in messages
    ]
    return model.model_validate(base).model_dump(mode="json")


@router.get("", response_model=Page[TicketRead], summary="Your tickets")
def list_tickets(
    db: DbSession, user: CurrentUser, page: PageQuery, status: Status | None = None
) -> Page[TicketRead]:
    items, cursor = service.list_own(db=db, user=user, params=page, status=status)
    return page_of(TicketRead, items, cursor)


@router.post("", response_model=TicketRead, status_code=status.HTTP_201_CREATED)
def open_ticket(
    body: TicketCreate, db: DbSession, user: CurrentUser, limiter: Limiter
) -> TicketRead:
    return TicketRead.model_validate(
        service.open_ticket(db=db, user=user, body=body, limiter=limiter)
    )


@router.get("/{ticket_id}", response_model=TicketDetail | StaffTicketDetail)
def get_ticket(ticket: VisibleTicket, db: DbSession, user: CurrentUser) -> dict[str, Any]:
    return _detail(db, ticket, service.is_staff(user))


@router.post(
    "/{ticket_id}/messages",
    response_model=MessageRead | StaffMessageRead,
    status_code=status.HTTP_201_CREATED,
    summary="Reply (JSON, or multipart with files)",
    # The body is read by _message_input, so FastAPI cannot see it: both forms are declared here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": MessageCreate.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["message"],
                        "properties": {
                            **MessageCreate.model_json_schema()["properties"],
                            "files": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "Attachments (support.attachment_* settings)",
                            },
                        },
                    }
                },
            },
        }
    },
)
def post_message(
    payload: MessageInput,
    ticket: ChangeableTicket,
    db: DbSession,
    user: CurrentUser,
    settings: AppSettings,
    limiter: Limiter,
) -> dict[str, Any]:
    # The body is read before the ticket is loaded: its row lock is not held while a client
    # sends its files.
    body, uploads = payload
    message = service.add_message(
        db=db,
        ticket=ticket,
        author=user,
        body=body,
        uploads=uploads,
        storage=storage_for(settings),
        limiter=limiter,
    )
    staff = service.is_staff(user)
    view = message_view(message, "staff" if staff else "customer", staff=staff)
    return (StaffMessageRead if staff else MessageRead).model_validate(view).model_dump(mode="json")


@router.post("/{ticket_id}/close", response_model=TicketRead)
def close_ticket(ticket: ChangeableTicket, db: DbSession) -> TicketRead:
    return TicketRead.model_validate(service.close(db=db, ticket=ticket))


@router.post("/{ticket_id}/rating", response_model=TicketRead)
def rate_ticket(
    ticket: ChangeableTicket, body: RatingCreate, db: DbSession, user: CurrentUser
) -> TicketRead:
    return TicketRead.model_validate(
        service.rate(db=db, ticket=ticket, user=user, rating=body.rating)
    )


@router.get("/{ticket_id}/attachments/{attachment_id}", response_class=Response)
def download_attachment(
    ticket: VisibleTicket,
    attachment_id: str,
    db: DbSession,
    user: CurrentUser,
    settings: AppSettings,
) -> Response:
    meta, data = service.attachment_of(
        db=db,
        ticket=ticket,
        attachment_id=attachment_id,
        staff=service.is_staff(user),
        storage=storage_for(settings),
    )
    return transfer.download(meta, data)


# -- staff -------------------------------------------------------------------------------------


@admin.get("", response_model=Page[StaffTicketRead], summary="The support queue")
def ticket_queue(
    db: DbSession,
    user: StaffUser,
    page: PageQuery,
    status: Status | None = None,
    priority: Priority | None = None,
    assigned_to: uuid.UUID | None = None,
    category: str | None = None,
    unassigned: bool = False,
) -> Page[StaffTicketRead]:
    items, cursor = service.queue(
        db=db,
        params=page,
        status=status,
        priority=priority,
        assigned_to=assigned_to,
        category=category,
        unassigned=unassigned,
    )
    return page_of(StaffTicketRead, items, cursor)


@admin.patch("/{ticket_id}", response_model=StaffTicketRead)
def update_ticket(ticket: QueueTicket, body: TicketAdminUpdate, db: DbSession) -> StaffTicketRead:
    return StaffTicketRead.model_validate(service.update_ticket(db=db, ticket=ticket, body=body))
