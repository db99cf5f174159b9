"""Rendering pages: the Jinja2 environment, flash messages and redirects after a form post.

Every page gets ``request``, the signed-in ``user`` (or None), ``csrf`` (the token every form
carries in its hidden ``csrftoken`` field), the flash messages of the last redirect and a fresh
``nonce`` (forms that create something send it as their idempotency key, so a double submit
creates one thing).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse, RedirectResponse

from vmcloud.accounts.models import STAFF_ROLES
from vmcloud.web.session import PanelLogin

TEMPLATES = Path(__file__).parent / "templates"
FLASH_COOKIE = "__Host-vmc_flash"
LEVELS = ("ok", "info", "warning", "error")


def _money(value: Decimal | float | int | str | None, currency: str = "") -> str:
    if value is None:
        return "—"
    amount = Decimal(str(value)).quantize(Decimal("0.01"))
    sign = "-" if amount < 0 else ""
    text = f"{sign}{abs(amount):,.2f}"
    return f"{text} {currency}".strip()


def price_text(value: Decimal | float | int | str) -> str:
    """A price as the plan states it: cents, or finer for hourly rates (0.006)."""
    amount = Decimal(str(value))
    if amount == amount.quantize(Decimal("0.01")):
        return f"{amount:.2f}"
    return format(amount.normalize(), "f")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _json_script(value: Any) -> Markup:
    """Data for a page's script, safe inside ``<script type="application/json">``."""
    text = json.dumps(value, default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above for the script context


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = _money
    env.filters["when"] = _when
    env.filters["price"] = price_text
    env.filters["json_script"] = _json_script
    return env


ENV = make_environment()


class Flash:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeSerializer(secret, salt="vmcloud.flash")

    def dump(self, messages: list[tuple[str, str]]) -> str:
        return self._serializer.dumps(messages)

    def load(self, raw: str | None) -> list[tuple[str, str]]:
        if not raw or len(raw) > 4000:
            return []
        try:
            data = self._serializer.loads(raw)
        except BadSignature:
            return []
        if not isinstance(data, list):
            return []
        return [
            (str(m[0]), str(m[1]))
            for m in data
            if isinstance(m, list) and len(m) == 2 and m[0] in LEVELS
        ]


def _flash(request: Request) -> Flash:
    flash: Flash = request.app.state.panel_flash
    return flash


def csrf_token(request: Request) -> str:
    get = request.scope.get("csrftoken")
    return str(get()) if callable(get) else ""


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    login: PanelLogin | None = getattr(request.state, "panel_login", None)
    flashes = _flash(request).load(request.cookies.get(FLASH_COOKIE))
    values: dict[str, Any] = {
        "request": request,
        "user": login.user if login else None,
        "staff": login is not None and login.role in STAFF_ROLES,
        "csrf": csrf_token(request),
        "flashes": flashes,
        "nonce": uuid.uuid4().hex,
        "errors": {},
        "form": {},
        "htmx": request.headers.get("hx-request") == "true",
    }
    values.update(context or {})
    html = ENV.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
    if flashes:
        response.delete_cookie(FLASH_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


def fragment(template: str, **context: Any) -> str:
    """A piece of a page (a table row, a badge) for a live update or an htmx swap."""
    return ENV.get_template(template).render(context)


def redirect(
    request: Request, url: str, *, flash: str | None = None, level: str = "ok"
) -> RedirectResponse:
    """303 See Other after a form post, with a message for the next page."""
    response = RedirectResponse(url, status_code=303)
    if flash:
        response.set_cookie(
            FLASH_COOKIE,
            _flash(request).dump([(level, flash)]),
            path="/",
            secure=True,
            httponly=True,
            samesite="lax",
        )
    return response
