"""RFC 9457 problem responses.

Services raise :class:`ProblemError` subclasses; the handlers installed by
:func:`install_problem_handlers` turn them, FastAPI's validation errors and Starlette's HTTP
errors into ``application/problem+json`` bodies of the same shape everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from vmcloud.core.logging import get_logger

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = get_logger(__name__)


class ProblemError(Exception):
    """An error that is meant for the client: it carries its own status, type and wording."""

    status: int = 400
    type: str = "bad-request"
    title: str = "Bad request"
    # When true, the request's unit of work commits what was flushed before this error was
    # raised instead of rolling it back: security events that must be recorded although the
    # request fails (a failed login's audit row, a refresh-token family revoked on reuse).
    commit: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        type: str | None = None,
        title: str | None = None,
        commit: bool | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        if commit is not None:
            self.commit = commit
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers = dict(headers) if headers else None
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if title is not None:
            self.title = title


class InvalidInputError(ProblemError):
    status = 422
    type = "validation"
    title = "Validation failed"


class UnauthorizedError(ProblemError):
    status = 401
    type = "unauthorized"
    title = "Authentication required"


class ForbiddenError(ProblemError):
    status = 403
    type = "forbidden"
    title = "Forbidden"


class NotFoundError(ProblemError):
    status = 404
    type = "not-found"
    title = "Not found"


class ConflictError(ProblemError):
    status = 409
    type = "conflict"
    title = "Conflict"


class RateLimitedError(ProblemError):
    status = 429
    type = "rate-limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailableError(ProblemError):
    status = 503
    type = "unavailable"
    title = "Service unavailable"


def problem_type_uri(slug: str) -> str:
    return slug if slug.startswith(("/", "about:", "http")) else f"/problems/{slug}"


def problem_response(
    *,
    status: int,
    type: str,
    title: str,
    detail: str | None = None,
    errors: Sequence[Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": problem_type_uri(type),
        "title": title,
        "status": status,
        "detail": detail or title,
    }
    if errors is not None:
        body["errors"] = list(errors)
    if extra:
        body.update(extra)
    return Response(
        content=json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers) if headers else None,
    )


def internal_error_response(request_id: str | None) -> Response:
    """The body of an unexpected failure: no message, no trace, only what support can look up."""
    return problem_response(
        status=500,
        type="internal",
        title="Internal server error",
        detail="The server could not complete the request. Quote the request id to support.",
        extra={"request_id": request_id} if request_id else None,
    )


_HTTP_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "rate-limited",
    503: "unavailable",
}


def _field_name(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _problem_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(
        status=exc.status,
        type=exc.type,
        title=exc.title,
        detail=exc.detail,
        errors=exc.errors,
        headers=exc.headers,
    )


async def _validation_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    if any(err.get("type") == "json_invalid" for err in raw):
        return problem_response(
            status=400,
            type="malformed-json",
            title="Malformed JSON",
            detail="The request body is not valid JSON.",
        )
    errors = [
        {"field": _field_name(err.get("loc", ())), "message": str(err.get("msg", "invalid"))}
        for err in raw
    ]
    return problem_response(
        status=422,
        type="validation",
        title="Validation failed",
        detail="The request has invalid or missing fields.",
        errors=errors,
    )


async def _http_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    slug = _HTTP_TYPES.get(status, title.lower().replace(" ", "-"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    if status == 404:
        detail = "No resource at this address." if detail in (None, "Not Found") else detail
    if status == 405:
        detail = "This method is not allowed on this resource."
    return problem_response(
        status=status, type=slug, title=title, detail=detail, headers=exc.headers
    )


# Seconds a client should wait before retrying when the database is away or a transaction
# lost a race PostgreSQL broke (a deadlock, a serialization failure, a cancelled statement).
DATABASE_RETRY_AFTER = 5
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,  # connection refused or lost; deadlock; statement timeout
    sqlalchemy.exc.InterfaceError,  # a connection that was already closed
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time
    psycopg.OperationalError,  # raised by code that uses psycopg directly
    psycopg.InterfaceError,
)


async def _database_error_handler(request: Request, exc: Exception) -> Response:
    log.warning("database.unavailable", path=request.url.path, error=type(exc).__name__)
    return problem_response(
        status=503,
        type="unavailable",
        title="Service unavailable",
        detail="The service is briefly unable to reach its database; try again shortly.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, _database_error_handler)
