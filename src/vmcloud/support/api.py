"""Routes: customers' tickets, and the staff queue."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from vmcloud.accounts.deps import CurrentUser, Limiter, StaffUser
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import InvalidInputError, NotFoundError
from vmcloud.core.pagination import Page, PageQuery, page_of
from vmcloud.db.session import DbSession
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import ATTACHMENT_MAX_BYTES, ATTACHMENT_MAX_COUNT
from vmcloud.support import attachments, service
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
_MAX_PARTS, _MAX_FIELD = attachments.MAX_PARTS, attachments.MAX_FIELD


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
    # Limits are read in a short session of their own: the request's belongs to the route.
    factory = request.app.state.session_factory
    with factory() as db:
        max_bytes = site_settings.get(db, ATTACHMENT_MAX_BYTES)
        max_count = site_settings.get(db, ATTACHMENT_MAX_COUNT)
    # A body larger than the files it may carry was refused before any of it was read
    # (core/size_limits.py, with attachments.upload_route).
    async with request.form(
        max_files=max_count + 1, max_fields=_MAX_PARTS, max_part_size=_MAX_FIELD
    ) as form:
        fields: dict[str, Any] = {}
        uploads: list[Upload] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != "files":
                    raise InvalidInputError(
                        "Files go in the field named files.",
                        errors=[{"field": name, "message": "unexpected file"}],
                    )
                if len(uploads) >= max_count:
                    raise InvalidInputError(
                        f"At most {max_count} files per message.",
                        errors=[{"field": "files", "message": f"at most {max_count} files"}],
                    )
                data = await value.read(max_bytes + 1)
                uploads.append(
                    Upload(
                        name=value.filename or "attachment",
                        content_type=value.content_type or "",
                        data=data,
                    )
                )
            elif name in fields:
                raise InvalidInputError(
                    f"The field {name} is given twice.",
                    errors=[{"field": name, "message": "given twice"}],
                )
            else:
                fields[name] = value
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
    for message in service.messages_of(db=db, ticket=ticket, staff=service.is_staff(user)):
        for meta in message.attachments_json or []:
            if meta.get("id") == attachment_id:
                try:
                    data = storage_for(settings).get(meta["key"])
                except FileNotFoundError:
                    break
                name = meta["name"].encode("ascii", "replace").decode().replace('"', "'")
                return Response(
                    content=data,
                    media_type=meta["content_type"],
                    headers={
                        "Content-Disposition": f'attachment; filename="{name}"',
                        "X-Content-Type-Options": "nosniff",
                        "Content-Security-Policy": "default-src 'none'; sandbox",
                    },
                )
    raise NotFoundError("There is no such attachment.")


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
