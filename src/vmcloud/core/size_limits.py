"""Request size limits, in front of every route (pure ASGI, like the request middleware).

- **Headers**: a request line and headers larger than ``max_header_bytes`` together are
  ``431``. (The HTTP server already stops buffering an incomplete header block at that size,
  see ``cli._serve``; this answers the ones that arrived whole in one read.)
- **Bodies**: a body larger than its limit is ``413`` before the application reads it. A
  declared ``Content-Length`` is checked before the application runs at all; a body without
  one (chunked) is counted as it arrives and cut off at the limit, so no caller can make the
  process hold more than the limit in memory or on disk. The limit is ``max_body_bytes``,
  except for multipart bodies sent to an *upload route*, which may be as large as that route's
  own limit (a ticket message with files: what the site's attachment settings allow).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmcloud.core.errors import problem_response


@dataclass(frozen=True)
class UploadRoute:
    """Multipart bodies to paths matching ``path`` may be as large as ``limit()`` (which may
    read the database: it runs in a worker thread, and only for such requests)."""

    path: re.Pattern[str]
    limit: Callable[[], int]


class _BodyTooLargeError(Exception):
    pass


def _too_large(limit: int) -> Response:
    return problem_response(
        status=413,
        type="payload-too-large",
        title="Payload too large",
        detail=f"The request body is larger than this address accepts ({limit} bytes).",
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _header_bytes(scope: Scope) -> int:
    """About what the request line and headers took on the wire."""
    line = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 32
    return line + sum(len(k) + len(v) + 4 for k, v in scope.get("headers", []))


class RequestSizeLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_header_bytes: int,
        uploads: Sequence[UploadRoute] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.uploads = tuple(uploads)

    async def _body_limit(self, scope: Scope) -> int:
        content_type = (_header(scope, b"content-type") or "").lower()
        if content_type.startswith("multipart/form-data"):
            for route in self.uploads:
                if route.path.match(scope["path"]):
                    return max(self.max_body_bytes, await run_in_threadpool(route.limit))
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _header_bytes(scope) > self.max_header_bytes:
            await problem_response(
                status=431,
                type="header-fields-too-large",
                title="Request header fields too large",
                detail=f"The request line and headers exceed {self.max_header_bytes} bytes.",
            )(scope, receive, send)
            return
        limit = await self._body_limit(scope)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return

        received = 0
        refused = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # the application's answer to a body it could not read: replaced below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused or started:
                raise
        if refused and not started:
            await _too_large(limit)(scope, receive, send)
