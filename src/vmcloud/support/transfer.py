"""Files over HTTP, for the API's routes and the panel's alike: reading a message's form
(``multipart/form-data`` with ``files`` within the attachment settings, or a plain urlencoded
form), and answering an attachment's download."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from starlette.datastructures import UploadFile

from vmcloud.core.errors import InvalidInputError
from vmcloud.support import attachments
from vmcloud.support.attachments import MAX_FIELD, MAX_PARTS, Upload


def _limits(request: Request) -> tuple[int, int]:
    """``(max_bytes, max_count)`` of ``attachments.limits``, read in a short session of their
    own (the request's belongs to the route)."""
    with request.app.state.session_factory() as db:
        found = attachments.limits(db)
    return found["max_bytes"], found["max_count"]


async def read_form(
    request: Request, *, skip_unchosen: bool = False, fields: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[Upload]]:
    """The form's text fields (each at most once) and its files (only in ``files``, at most
    the settings' count, each read up to one byte past the size limit: enough to refuse it).
    ``skip_unchosen``: leave out the empty, nameless part a browser sends for a file input
    with no file chosen. ``fields``: filled with the text fields even when the files are
    refused (a form can show what was typed). A body larger than its files and fields could
    be was refused before any of it was read (``core/size_limits.py``, with
    ``attachments.upload_route``)."""
    max_bytes, max_count = _limits(request)
    fields = {} if fields is None else fields
    uploads: list[Upload] = []
    async with request.form(
        max_files=max_count + 1, max_fields=MAX_PARTS, max_part_size=MAX_FIELD
    ) as form:
        items = form.multi_items()
        for name, value in items:
            if isinstance(value, UploadFile):
                continue
            if name in fields:
                raise InvalidInputError(
                    f"The field {name} is given twice.",
                    errors=[{"field": name, "message": "given twice"}],
                )
            fields[name] = value
        for name, value in items:
            if isinstance(value, UploadFile):
                if name != "files":
                    raise InvalidInputError(
                        "Files go in the field named files.",
                        errors=[{"field": name, "message": "unexpected file"}],
                    )
                unchosen = skip_unchosen and not value.filename
                if not unchosen:
                    _check_count(uploads, max_count)  # before reading a file too many
                data = await value.read(max_bytes + 1)
                if unchosen and not data:
                    continue
                _check_count(uploads, max_count)
                uploads.append(
                    Upload(
                        name=value.filename or "attachment",
                        content_type=value.content_type or "",
                        data=data,
                    )
                )
    return fields, uploads


def _check_count(uploads: list[Upload], max_count: int) -> None:
    if len(uploads) >= max_count:
        raise InvalidInputError(
            f"At most {max_count} files per message.",
            errors=[{"field": "files", "message": f"at most {max_count} files"}],
        )


def download(meta: dict[str, Any], data: bytes) -> Response:
    """An attachment as a download, never shown inline: its stored type, not sniffed, in a
    sandbox."""
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
