"""Errors on panel pages are pages: the same problem (status, title, detail) the API would
answer, rendered as HTML for a browser, and a redirect to the login page when the session is
missing or over. API paths, and callers that do not ask for HTML, keep the problem JSON."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from vmcloud.core.errors import PROBLEM_MEDIA_TYPE
from vmcloud.web.render import render
from vmcloud.web.security import is_panel_path
from vmcloud.web.session import SESSION_COOKIE, LoginRequiredError, end, login_url


def _wants_html(request: Request) -> bool:
    return is_panel_path(request.url.path) and (
        "text/html" in request.headers.get("accept", "")
        or request.headers.get("hx-request") == "true"
        or request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        )
    )


def install(app: FastAPI) -> None:
    """Wrap the problem handlers already installed (``core.errors``) for panel pages."""
    for exc_class, handler in list(app.exception_handlers.items()):
        app.exception_handlers[exc_class] = _for_panel(handler)


Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def _for_panel(handler: Handler) -> Handler:
    async def panel_handler(request: Request, exc: Exception) -> Response:
        if isinstance(exc, LoginRequiredError) and is_panel_path(request.url.path):
            redirect = RedirectResponse(
                login_url(request) if request.method == "GET" else "/login", status_code=303
            )
            # Only a cookie the request carried is cleared: a form another site posts arrives
            # without it (SameSite=Lax), and must not log the browser out.
            if SESSION_COOKIE in request.cookies:
                end(redirect)
            return redirect
        answer = handler(request, exc)
        response = await answer if inspect.isawaitable(answer) else answer
        if not _wants_html(request) or response.media_type != PROBLEM_MEDIA_TYPE:
            return response
        problem = json.loads(bytes(response.body))
        headers = {
            key: value
            for key, value in response.headers.items()
            if key.lower() in ("retry-after", "allow")
        }
        return render(
            request,
            "error.html",
            {"problem": problem, "retry_after": headers.get("retry-after")},
            status=response.status_code,
            headers=headers,
        )

    return panel_handler
