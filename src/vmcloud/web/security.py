"""What every panel response carries and every panel form post must prove.

- Headers: the Content-Security-Policy of the panel (everything from this origin, nothing
  inline), ``Cache-Control: no-store``, ``Referrer-Policy: same-origin`` and friends, on every
  response outside the API. A route may set its own CSP (the console page needs inline styles).
- CSRF: ``asgi-csrf``'s double-submit signed cookie ``__Host-vmc_csrf`` and hidden field
  ``csrftoken``, for every state-changing request outside ``/api/`` (which is bearer-only and
  reads no cookie). The login and sign-up forms are protected even without cookies (login
  CSRF). The body checks run behind the request size limit; a malformed form body is a 400.
- Uploads: ``multipart/form-data`` only to the routes that take files (``upload_paths``),
  others answer 415. Its first part must be the ``csrftoken`` field: the token is checked
  (as ``asgi-csrf`` checks a form's) before any file is read, then the body is replayed. An
  upload that fails the check and carries no session cookie has no session to act with: it
  goes on to its route, which sends the caller to the login page before reading the body (as
  a logged-out form post does; asgi-csrf lets a post without cookies through likewise).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from asgi_csrf import DEFAULT_SIGNING_NAMESPACE, asgi_csrf, cookies_from_scope
from itsdangerous import BadSignature, URLSafeSerializer
from python_multipart.multipart import parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmcloud.core.errors import problem_response
from vmcloud.web.session import SESSION_COOKIE

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
CSRF_COOKIE = "__Host-vmc_csrf"
CSRF_FIELD = "csrftoken"
# Paths that are not the panel's: the API, its documentation (which loads its own assets) and
# the probes keep their own headers.
NOT_PANEL = ("/api/", "/docs", "/openapi.json", "/healthz", "/readyz", "/metrics")
# The sandbox payment page stands in for a provider's checkout on another site: its form is
# the provider's, not ours.
CSRF_EXEMPT = ("/api/", "/billing/sandbox/")
ALWAYS_PROTECT = {"/login", "/login/2fa", "/signup", "/forgot-password", "/reset-password"}
_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
_HSTS = (b"strict-transport-security", b"max-age=31536000")


def is_panel_path(path: str) -> bool:
    return not path.startswith(NOT_PANEL)


class PanelHeaders:
    """Adds the panel's security headers to every response outside the API (a route's own
    ``Content-Security-Policy`` or ``Cache-Control`` wins; static files may be cached)."""

    def __init__(self, app: ASGIApp, *, https: bool = False) -> None:
        """``https``: the panel's public URL is https; browsers are told to keep to it."""
        self.app = app
        self.headers = _HEADERS + ([_HSTS] if https else [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_panel_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {key.lower() for key, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CSP.encode()))
                for key, value in self.headers:
                    if key not in present and not (static and key == b"cache-control"):
                        headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse(scope: Scope, send: Send, message_id: Any = None) -> None:
    response = problem_response(
        status=403,
        type="csrf",
        title="Form expired",
        detail="This form could not be verified. Reload the page and submit it again.",
    )
    await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def signing_secret(jwt_key: str) -> str:
    """A key of its own for CSRF tokens, derived from the platform's signing secret."""
    return hmac.new(jwt_key.encode(), b"vmcloud.csrf", hashlib.sha256).hexdigest()


# The leading csrftoken part of an upload: its headers and a token fit in this many bytes.
FIRST_PART_MAX = 2048
_NEED_MORE = object()


def leading_token(body: bytes, boundary: bytes) -> str | object | None:
    """The value of ``body``'s first part when it is the ``csrftoken`` text field; None when
    the body does not start with it (another field, a file, not multipart); ``_NEED_MORE``
    while the part is not complete yet."""
    opening = b"--" + boundary + b"\r\n"
    if len(body) < len(opening):
        return _NEED_MORE if opening.startswith(body) else None
    if not body.startswith(opening):
        return None
    end = body.find(b"\r\n\r\n", len(opening))
    if end < 0:
        return _NEED_MORE
    disposition = None
    for line in body[len(opening) : end].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-disposition":
            disposition = parse_options_header(value.strip())
    if disposition is None or disposition[0] != b"form-data":
        return None
    params = disposition[1]
    if params.get(b"name") != CSRF_FIELD.encode() or b"filename" in params:
        return None
    close = body.find(b"\r\n--" + boundary, end + 4)
    if close < 0:
        return _NEED_MORE
    try:
        return body[end + 4 : close].decode("ascii")
    except UnicodeDecodeError:
        return None


class PanelInputGuard:
    """``asgi-csrf`` in front of the panel only (the API never sees it), with a 400 for input
    it would choke on: a cookie header that is not UTF-8, a form body that is not UTF-8, a
    multipart body to a route that takes no files (415). Multipart bodies to ``upload_paths``
    are checked here (see the module's docstring): asgi-csrf's own multipart parser does not
    work with the python-multipart this project pins."""

    def __init__(
        self,
        app: ASGIApp,
        protected: ASGIApp,
        *,
        signer: URLSafeSerializer,
        upload_paths: re.Pattern[str] | None = None,
    ) -> None:
        self.app = app
        self.protected = protected
        self.signer = signer
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"].startswith(CSRF_EXEMPT)
            or not is_panel_path(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        # asgi-csrf passes a copy of the scope on; the route the router matches must still
        # reach the outer layers (the access log and metrics label requests by it).
        scope[OUTER_SCOPE] = scope
        headers = dict(scope.get("headers") or [])
        try:
            headers.get(b"cookie", b"").decode("utf-8")
        except UnicodeDecodeError:
            await _bad_request(scope, send, "The Cookie header is malformed.")
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "TRACE"):
            await self.protected(scope, receive, send)
            return
        content_type = headers.get(b"content-type", b"")
        kind = content_type.split(b";", 1)[0].strip().lower()
        if kind == b"multipart/form-data":
            if self.upload_paths is not None and self.upload_paths.match(scope["path"]):
                await self._upload(scope, receive, send, content_type)
                return
            response = problem_response(
                status=415,
                type="unsupported-media-type",
                title="Unsupported media type",
                detail="Panel forms are sent as application/x-www-form-urlencoded.",
            )
            await response(scope, _no_receive, send)
            return
        if kind != b"application/x-www-form-urlencoded":
            await self.protected(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            await _bad_request(scope, send, "The form data is malformed.")
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.protected(scope, replay, send)

    def _cookie_token(self, scope: Scope) -> str | None:
        token = cookies_from_scope(scope).get(CSRF_COOKIE)
        if not token:
            return None
        try:
            self.signer.loads(token, DEFAULT_SIGNING_NAMESPACE)
        except BadSignature:
            return None
        return str(token)

    async def _upload(
        self, scope: Scope, receive: Receive, send: Send, content_type: bytes
    ) -> None:
        """Read up to the end of the first part, check it is the cookie's token, then hand the
        request on (the token as asgi-csrf's header, so it lets the request through and the
        page still gets its token) with what was read replayed before the rest."""
        boundary = parse_options_header(content_type)[1].get(b"boundary")
        if not boundary:
            await _bad_request(scope, send, "The form data is malformed.")
            return
        messages: list[Message] = []
        body = b""
        found: str | object | None = _NEED_MORE
        while found is _NEED_MORE:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            found = leading_token(body[:FIRST_PART_MAX], boundary)
            if found is _NEED_MORE and (
                len(body) >= FIRST_PART_MAX or not message.get("more_body", False)
            ):
                found = None
        expected = self._cookie_token(scope)
        headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"x-csrftoken"]

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        if not (isinstance(found, str) and expected and secrets.compare_digest(found, expected)):
            if SESSION_COOKIE in cookies_from_scope(scope):
                await _refuse(scope, send)
                return
            # Logged out: the route's login check answers (a redirect to the login page).
            scope.pop(OUTER_SCOPE, None)
            scope["headers"] = headers
            await self.app(scope, replay, send)
            return
        headers.append((b"x-csrftoken", expected.encode("latin-1")))
        await self.protected({**scope, "headers": headers}, replay, send)


async def _bad_request(scope: Scope, send: Send, detail: str) -> None:
    response = problem_response(status=400, type="bad-request", title="Bad request", detail=detail)
    await response(scope, _no_receive, send)


OUTER_SCOPE = "vmcloud.outer_scope"


class _RouteEcho:
    """Copies what routing found (the route, the endpoint, the path parameters) from the scope
    asgi-csrf made back into the scope the outer middleware holds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outer = scope.pop(OUTER_SCOPE, None)
        try:
            await self.app(scope, receive, send)
        finally:
            if outer is not None and outer is not scope:
                for key in ("route", "endpoint", "path_params"):
                    if key in scope:
                        outer[key] = scope[key]
                outer.pop(OUTER_SCOPE, None)


class PanelCsrf:
    """The panel's CSRF check as a middleware (see the module's docstring)."""

    def __init__(
        self, app: ASGIApp, *, jwt_key: str, upload_paths: re.Pattern[str] | None = None
    ) -> None:
        secret = signing_secret(jwt_key)
        protected: ASGIApp = asgi_csrf(
            _RouteEcho(app),
            signing_secret=secret,
            cookie_name=CSRF_COOKIE,
            always_protect=ALWAYS_PROTECT,
            skip_if_scope=lambda scope: scope["path"].startswith(CSRF_EXEMPT),
            cookie_secure=True,
            cookie_samesite="Lax",
            send_csrf_failed=_refuse,
        )
        self.guard = PanelInputGuard(
            app, protected, signer=URLSafeSerializer(secret), upload_paths=upload_paths
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.guard(scope, receive, send)
