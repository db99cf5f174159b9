"""The outermost request layer: request id, access log, metrics, and the last-resort 500.

A plain ASGI middleware rather than ``BaseHTTPMiddleware`` so that it costs little and does not
buffer streaming bodies.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmcloud.core.errors import internal_error_response, problem_response
from vmcloud.core.logging import get_logger
from vmcloud.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

REQUEST_ID_HEADER = "x-request-id"
# A caller may pass its own id (a proxy's, say) as long as it is short and harmless to log.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

log = get_logger("vmcloud.http")


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if path:
        return str(path)
    if "endpoint" in scope:
        # A matched plain route (/openapi.json, /docs): a fixed path, safe as a label.
        return str(scope["path"])
    # Unmatched paths are not used as labels: every random URL would become a new series.
    return "<unmatched>"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if _has_nul(scope):
                response = problem_response(
                    status=400,
                    type="bad-request",
                    title="Bad request",
                    detail="The address contains a NUL character.",
                )
                await response(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("request.unhandled_error", method=scope["method"], path=scope["path"])
            if response_started:
                raise
            status = 500
            await internal_error_response(request_id)(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], route).observe(elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()


def _has_nul(scope: Scope) -> bool:
    raw = bytes(scope.get("raw_path") or b"") + b"?" + bytes(scope.get("query_string") or b"")
    return "\x00" in scope["path"] or b"%00" in raw or b"\x00" in raw


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1")
            return candidate if _CLIENT_ID.match(candidate) else None
    return None
