"""Bodies of the support endpoints. Customers and staff get different read models: the
customer's never carries internal notes, staff-only fields or counts that include notes."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, StringConstraints

from vmcloud.core.schemas import InputModel, OutputModel, UTCDateTime

Priority = Literal["low", "normal", "high", "urgent"]
Status = Literal["open", "in_progress", "waiting_customer", "resolved", "closed"]


def _one_line(value: str) -> str:
    # Subjects go into email headers and one-line views: no line breaks or other controls.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("must be one line without control characters")
    return value


Subject = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    AfterValidator(_one_line),
]
Category = Annotated[
    str, StringConstraints(min_length=1, max_length=100), AfterValidator(_one_line)
]
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]


class TicketCreate(InputModel):
    subject: Subject
    description: Body
    category: Category | None = None
    priority: Priority = "normal"
    instance_id: uuid.UUID | None = None


class MessageCreate(InputModel):
    message: Body
    # Strict: "yes" or 1 must not quietly turn a note into a public reply, or the reverse.
    is_internal: StrictBool = False


class RatingCreate(InputModel):
    rating: Annotated[int, Field(ge=1, le=5, strict=True)]


class TicketAdminUpdate(InputModel):
    status: Status | None = None
    priority: Priority | None = None
    # null unassigns; leaving the field out leaves the assignee as it is.
    assigned_to: uuid.UUID | None = None


class AttachmentRead(OutputModel):
    id: str
    name: str
    size: int
    content_type: str
    sha256: str


class MessageRead(OutputModel):
    id: uuid.UUID
    user_id: uuid.UUID
    author_role: str  # "customer" or "staff": customers see who answered, not staff details
    message: str
    attachments: list[AttachmentRead]
    created_at: UTCDateTime | None


class StaffMessageRead(MessageRead):
    is_internal: bool


class TicketRead(OutputModel):
    id: uuid.UUID
    user_id: uuid.UUID
    instance_id: uuid.UUID | None
    subject: str
    description: str | None
    category: str | None
    priority: str | None
    status: str | None
    resolved_at: UTCDateTime | None
    satisfaction_rating: int | None
    created_at: UTCDateTime | None
    updated_at: UTCDateTime | None


class TicketDetail(TicketRead):
    messages: list[MessageRead]


class StaffTicketRead(TicketRead):
    assigned_to: uuid.UUID | None


class StaffTicketDetail(StaffTicketRead):
    messages: list[StaffMessageRead]


def message_view(message: Any, author_role: str, *, staff: bool) -> dict[str, Any]:
    data = {
        "id": message.id,
        "user_id": message.user_id,
        "author_role": author_role,
        "message": message.message,
        "attachments": [
            {k: a[k] for k in ("id", "name", "size", "content_type", "sha256")}
            for a in (message.attachments_json or [])
        ],
        "created_at": message.created_at,
    }
    if staff:
        data["is_internal"] = bool(message.is_internal)
    return data
