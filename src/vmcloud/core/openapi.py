"""The OpenAPI document, with the problem responses each operation really gives.

FastAPI documents only success responses and its own 422 shape (``HTTPValidationError``), but
every error of this API is an RFC 9457 ``application/problem+json`` body (``core/errors.py``).
:func:`install_openapi` rewrites the generated document once, in one place:

- a ``Problem`` component schema, the shape :func:`~vmcloud.core.errors.problem_response`
  writes;
- for each operation, the problem responses its route's shape implies, read from the route
  itself (its dependencies, parameters and body) so a new route is documented without a line
  here;
- the few statuses only a service knows it raises (a 402 for an unpaid plan, a 409 for a taken
  slug) from :data:`RAISED_BY_SERVICES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.params import Depends
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.routing import BaseRoute

from vmcloud.accounts.deps import AdminUser, CurrentUser, Limiter, StaffUser, VerifiedUser
from vmcloud.core.errors import PROBLEM_MEDIA_TYPE
from vmcloud.core.idempotency import KeyHeader
from vmcloud.db.session import DbSession

PROBLEM_REF = "#/components/schemas/Problem"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem: every error of this API has this shape.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {
            "type": "string",
            "format": "uri-reference",
            "description": "What kind of problem, e.g. /problems/validation",
        },
        "title": {"type": "string", "description": "A short summary of the kind of problem"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong with this request"},
        "instance": {"type": "string", "format": "uri-reference"},
        "errors": {
            "type": "array",
            "description": "One entry per invalid field (422)",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "request_id": {
            "type": "string",
            "description": "Given on unexpected failures: quote it to support",
        },
    },
}

DESCRIPTIONS = {
    400: "Bad request: the body is not JSON, or the address carries a NUL character",
    401: "Not authenticated: no valid access token, or the login has ended",
    402: "The balance does not cover this",
    403: "Forbidden: the account's role or state, or a personal API token's scopes, do not allow"
    " this",
    404: "No such resource (or not yours)",
    409: "Conflict with the resource's state, or an Idempotency-Key reused with another request",
    413: "The request body is too large",
    422: "Invalid or missing fields; `errors` lists them",
    429: "Too many attempts; Retry-After says when to try again",
    502: "The payment provider failed; nothing changed",
    503: "Unavailable: the database, a provider or the capacity to do this is missing",
}

# Statuses a service raises that the route's shape does not reveal, by operation.
RAISED_BY_SERVICES: dict[str, set[int]] = {
    "GET /readyz": {503},
    "POST /api/v1/auth/register": {403, 409},
    "POST /api/v1/auth/verify-email": {400},
    "POST /api/v1/auth/login": {401, 403},
    "POST /api/v1/auth/refresh": {401},
    "POST /api/v1/auth/password-reset/confirm": {400},
    "POST /api/v1/me/password": {403},
    "POST /api/v1/me/2fa/setup": {409},
    "POST /api/v1/me/2fa/enable": {403, 409},
    "POST /api/v1/me/2fa/disable": {403, 409},
    "POST /api/v1/me/ssh-keys": {409},
    "POST /api/v1/me/tokens": {409},
    "PATCH /api/v1/admin/users/{user_id}": {409},
    "POST /api/v1/admin/products": {409},
    "PATCH /api/v1/admin/products/{ref}": {409},
    "DELETE /api/v1/admin/products/{ref}": {409},
    "POST /api/v1/instances": {402},
    "PATCH /api/v1/instances/{instance_id}": {409},
    "DELETE /api/v1/instances/{instance_id}": {409},
    "POST /api/v1/instances/{instance_id}/actions": {409},
    "POST /api/v1/admin/nodes": {409},
    "PATCH /api/v1/admin/nodes/{node_id}": {409},
    "POST /api/v1/admin/ip-pools": {409},
    "PATCH /api/v1/admin/ip-pools/{pool_id}": {409},
    "POST /api/v1/admin/ip-pools/{pool_id}/reserve": {409},
    "POST /api/v1/subscriptions/{subscription_id}/cancel": {409},
    "POST /api/v1/admin/users/{user_id}/debits": {402},
    "POST /api/v1/billing/top-ups": {502},
    "POST /api/v1/billing/webhooks/{provider}": {413},
    "POST /api/v1/admin/transactions/{transaction_id}/refund": {402, 502},
    "POST /api/v1/tickets/{ticket_id}/messages": {403, 409},
    "POST /api/v1/tickets/{ticket_id}/close": {409},
    "POST /api/v1/tickets/{ticket_id}/rating": {403, 409},
    "PATCH /api/v1/admin/tickets/{ticket_id}": {409},
}


def _dependency(alias: object) -> Callable[..., Any]:
    """The function behind an ``Annotated[..., Depends(f)]`` alias such as ``CurrentUser``."""
    for meta in get_args(alias)[1:]:
        if isinstance(meta, Depends) and meta.dependency is not None:
            return meta.dependency
    raise TypeError(f"{alias!r} is not a dependency alias")


AUTHENTICATED = _dependency(CurrentUser)
ROLE_CHECKED = {_dependency(a) for a in (StaffUser, AdminUser, VerifiedUser)}
IDEMPOTENT = _dependency(KeyHeader)
RATE_LIMITED = _dependency(Limiter)
DATABASE = _dependency(DbSession)


def _dependants(dependant: Dependant) -> list[Dependant]:
    """The route's own dependant and every dependency under it, however deep."""
    found = [dependant]
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        found.append(dep)
        stack.extend(dep.dependencies)
    return found


def problem_statuses(route: RouteContext, operation: dict[str, Any], method: str) -> set[int]:
    """The problem statuses an operation can answer, from its route's shape."""
    dependants = _dependants(route.dependant)
    calls = {d.call for d in dependants if d.call is not None}
    has_body = "requestBody" in operation
    has_input = has_body or any(
        d.path_params or d.query_params or d.header_params or d.cookie_params or d.body_params
        for d in dependants
    )
    statuses: set[int] = set()
    if has_input:
        statuses |= {400, 422}  # malformed JSON or a NUL in the address; invalid fields
    if AUTHENTICATED in calls:
        statuses |= {401, 403}  # 403: outside a personal API token's scopes
    if calls & ROLE_CHECKED:
        statuses.add(403)
    if any(d.path_params for d in dependants):  # loaders (compute.deps, …) take the id
        statuses.add(404)
    if IDEMPOTENT in calls:
        statuses.add(409)
    if has_body:
        statuses.add(413)
    if RATE_LIMITED in calls:
        statuses.add(429)
    if DATABASE in calls:
        statuses.add(503)
    return statuses | RAISED_BY_SERVICES.get(f"{method.upper()} {route.path_format}", set())


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": DESCRIPTIONS[status],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if status == 429:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}
        }
    return response


def document_problems(document: dict[str, Any], routes: list[BaseRoute]) -> dict[str, Any]:
    """Add the ``Problem`` schema and each operation's problem responses to ``document``."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    # Routes of included routers are reached through their contexts (full path, dependencies).
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        operations = document["paths"].get(route.path_format, {})
        for method in route.methods or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's HTTPValidationError: never what is sent
            for status in sorted(problem_statuses(route, operation, method)):
                responses[str(status)] = _problem_response(status)
    return document


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) return the document with its problems."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate(), list(app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
