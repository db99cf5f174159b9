"""Attachments of ticket messages: checked against the settings, stored outside the database.

Limits come from settings ``support.attachment_max_bytes``, ``support.attachment_max_count``
and ``support.attachment_types``. The declared content type must be allowed and, for the types
the platform knows, the bytes must agree with it (a script renamed ``.png`` is refused). All
files are checked before any is stored, so a refused upload stores nothing.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from vmcloud.core.errors import InvalidInputError, ProblemError
from vmcloud.core.size_limits import UploadRoute
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import (
    ATTACHMENT_MAX_BYTES,
    ATTACHMENT_MAX_COUNT,
    ATTACHMENT_TYPES,
)
from vmcloud.support.storage import Storage

# Magic numbers of the types the default settings allow.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
}


class PayloadTooLargeError(ProblemError):
    status = 413
    type = "attachment-too-large"
    title = "Attachment too large"


@dataclass(frozen=True)
class Upload:
    name: str
    content_type: str
    data: bytes  # at most max_bytes + 1 (enough to know it is too large)


# Multipart message bodies: at most this many parts, and each text field at most this large.
MAX_PARTS = 50
MAX_FIELD = 100 * 1024
# The routes that take attachments: a ticket's new message (the API's, for customers and staff
# alike, the customer's page's and the staff's page's), and the panel's new ticket.
MESSAGE_PATH = re.compile(
    r"^(/api/v1/tickets/[^/]+/messages|/support/new|/support/[^/]+/messages"
    r"|/admin/tickets/[^/]+/messages)$"
)


def upload_route(session_factory: sessionmaker[Session]) -> UploadRoute:
    """For the request size limits: a multipart message may be as large as the files it may
    carry and its other parts."""

    def limit() -> int:
        with session_factory() as db:
            max_bytes = site_settings.get(db, ATTACHMENT_MAX_BYTES)
            max_count = site_settings.get(db, ATTACHMENT_MAX_COUNT)
        return max_count * max_bytes + MAX_PARTS * MAX_FIELD

    return UploadRoute(MESSAGE_PATH, limit)


def _clean_name(name: str) -> str:
    # Only the last path segment, printable, bounded: the name is shown, never used as a path.
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c for c in base if unicodedata.category(c)[0] not in ("C", "Z") or c == " ")
    return cleaned.strip()[:255] or "attachment"


def _bad(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(
        f"The attachment {field} is not accepted: {message}.",
        errors=[{"field": "files", "message": message}],
    )


def check(upload: Upload, *, max_bytes: int, types: list[str]) -> None:
    if len(upload.data) > max_bytes:
        raise PayloadTooLargeError(f"{_clean_name(upload.name)} is larger than {max_bytes} bytes.")
    if not upload.data:
        raise _bad("file", f"{_clean_name(upload.name)} is empty")
    content_type = upload.content_type.split(";", 1)[0].strip().lower()
    if content_type not in types:
        raise InvalidInputError(
            f"Files of type {content_type or 'unknown'} cannot be attached.",
            type="attachment-type",
            title="Attachment type not allowed",
            errors=[{"field": "files", "message": f"allowed: {', '.join(types)}"}],
        )
    signatures = _SIGNATURES.get(content_type)
    if signatures is not None and not upload.data.startswith(signatures):
        raise _bad("file", f"the content of {_clean_name(upload.name)} is not {content_type}")
    if content_type == "text/plain":
        try:
            text = upload.data.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("file", "text files must be UTF-8") from None
        if "\x00" in text:
            raise _bad("file", "text files cannot contain NUL bytes")


def limits(db: Session) -> dict[str, Any]:
    """The attachment settings: ``max_bytes``, ``max_count`` and the allowed ``types``."""
    return {
        "max_bytes": site_settings.get(db, ATTACHMENT_MAX_BYTES),
        "max_count": site_settings.get(db, ATTACHMENT_MAX_COUNT),
        "types": site_settings.get(db, ATTACHMENT_TYPES),
    }


def check_uploads(*, db: Session, uploads: Sequence[Upload]) -> None:
    """Refuse the files unless every one of them is within the settings."""
    if not uploads:
        return
    found = limits(db)
    if len(uploads) > found["max_count"]:
        raise _bad("count", f"at most {found['max_count']} files per message")
    for upload in uploads:
        check(upload, max_bytes=found["max_bytes"], types=found["types"])


def store_uploads(
    *, db: Session, uploads: Sequence[Upload], storage: Storage
) -> list[dict[str, Any]]:
    """Check every upload, then store each; returns the ``attachments_json`` entries."""
    check_uploads(db=db, uploads=uploads)
    stored = []
    for upload in uploads:
        attachment_id = uuid.uuid4().hex
        key = f"{attachment_id[:2]}/{attachment_id}"
        storage.put(key, upload.data)
        stored.append(
            {
                "id": attachment_id,
                "name": _clean_name(upload.name),
                "size": len(upload.data),
                "content_type": upload.content_type.split(";", 1)[0].strip().lower(),
                "sha256": hashlib.sha256(upload.data).hexdigest(),
                "key": key,
            }
        )
    return stored
