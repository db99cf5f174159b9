"""The serial console page (``/instances/{id}/console``): xterm.js over a same-origin WebSocket
bridged to the VM's console (``compute.console``), or the boot log, read-only, when the VM is
not running. Ctrl-Alt-Del is a form."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, WebSocket
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import Response

from vmcloud.accounts.models import User
from vmcloud.compute import console
from vmcloud.compute import service as compute
from vmcloud.compute.models import Instance
from vmcloud.config import Settings
from vmcloud.core.errors import NotFoundError, ProblemError, problem_response
from vmcloud.db.session import DbSession
from vmcloud.web.forms import FormError, settle
from vmcloud.web.render import redirect, render
from vmcloud.web.security import CSP
from vmcloud.web.session import MAX_COOKIE, SESSION_COOKIE, PanelUser, login_of

router = APIRouter(include_in_schema=False)

# xterm.js adds <style> elements: this page alone allows inline styles (never inline scripts).
CONSOLE_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


def _instance(db: Session, user: User, instance_id: uuid.UUID) -> Instance:
    return compute.get_console_instance(db=db, instance_id=instance_id, user=user)


def _page(
    request: Request, db: Session, user: User, instance_id: uuid.UUID, problem: FormError | None
) -> Response:
    instance = _instance(db, user, instance_id)
    running = instance.status == "running"
    return render(
        request,
        "instances/console.html",
        {
            "section": "instances",
            "instance": instance,
            "running": running,
            "boot_log": "" if running else console.boot_log(db=db, instance=instance),
            "problem": problem,
        },
        status=problem.status if problem else 200,
        headers={"Content-Security-Policy": CONSOLE_CSP},
    )


@router.get("/instances/{instance_id}/console")
def console_page(
    request: Request, db: DbSession, user: PanelUser, instance_id: uuid.UUID
) -> Response:
    return _page(request, db, user, instance_id, None)


@router.post("/instances/{instance_id}/console/ctrl-alt-del")
def console_ctrl_alt_del(
    request: Request, db: DbSession, user: PanelUser, instance_id: uuid.UUID
) -> Response:
    instance = _instance(db, user, instance_id)
    try:
        console.send_ctrl_alt_del(db=db, instance=instance)
    except ProblemError as exc:
        return _page(request, db, user, instance_id, settle(db, exc))
    return redirect(request, f"/instances/{instance_id}/console", flash="Ctrl-Alt-Del sent.")


def same_origin(websocket: WebSocket) -> bool:
    """The page that opens the socket is this site's: its ``Origin`` is the panel's public URL
    (``VMCLOUD_BASE_URL``) in scheme, host and port, or, when that is unset, the address the
    request was sent to."""
    settings: Settings = websocket.app.state.settings
    origin = _origin(websocket.headers.get("origin", ""))
    if settings.base_url:
        return origin is not None and origin == _origin(settings.base_url)
    host = websocket.headers.get("host")
    scheme = "https" if websocket.url.scheme in ("wss", "https") else "http"
    return origin is not None and bool(host) and origin == _origin(f"{scheme}://{host}")


def _origin(url: str) -> tuple[str, str, int] | None:
    """Scheme, host and port (the scheme's default when none is given) of an http(s) URL."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username is not None:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _check(
    factory: sessionmaker[Session], raw: str | None, instance_id: uuid.UUID, first: bool = False
) -> console.Target | Response:
    """The console's target, or the problem refusing it (no live login, not the caller's);
    ``first``: the handshake's check (not a recheck), which notes who opened it."""
    with factory() as db:
        login = login_of(db, raw)
        if login is None:
            return problem_response(status=401, type="login-required", title="Log in to continue")
        try:
            instance = _instance(db, login.user, instance_id)
        except NotFoundError as exc:
            return problem_response(status=404, type=exc.type, title=exc.title, detail=exc.detail)
        if first:
            console.note_opened(db=db, instance=instance, user=login.user)
        return console.target(db=db, instance=instance)


@router.websocket("/instances/{instance_id}/console/ws")
async def console_socket(websocket: WebSocket, instance_id: uuid.UUID) -> None:
    if not same_origin(websocket):
        forbidden = problem_response(
            status=403,
            type="forbidden",
            title="Forbidden",
            detail="The console opens only from this site's own pages.",
        )
        await console.deny(websocket, forbidden)
        return
    raw = websocket.cookies.get(SESSION_COOKIE)
    raw = raw if raw and len(raw) <= MAX_COOKIE else None
    factory: sessionmaker[Session] = websocket.app.state.session_factory
    found = await console.read_db(websocket, _check, factory, raw, instance_id, True)
    if not isinstance(found, console.Target):
        await console.deny(websocket, found)
        return

    async def still_allowed() -> bool:
        again = await console.read_db(websocket, _check, factory, raw, instance_id)
        return isinstance(again, console.Target)

    await console.serve(websocket, found, still_allowed)
