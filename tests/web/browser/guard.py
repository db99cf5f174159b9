"""What every page test also asserts (PANEL.md): no request leaves the server's origin, no
Content-Security-Policy violation, no horizontal scroll at 390 px.

A :class:`PageGuard` watches a browser context from its creation; the fixtures check it when
the test ends. The detection functions are plain so the harness tests can prove each one."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Request, WebSocket
from playwright.sync_api import Error as PlaywrightError

PHONE_WIDTH = 390
PHONE_HEIGHT = 844
_LOCAL_SCHEMES = {"data", "blob", "about"}
_WEB_SCHEMES = {"ws": "http", "wss": "https"}
BINDING = "__vmcReportCspViolation"
# Runs before the page's own scripts in every document of the context. It is injected through
# the DevTools protocol, so the page's CSP (script-src 'self') does not block it, and it
# reports through a binding, not a request.
LISTENER = f"""
document.addEventListener("securitypolicyviolation", (event) => {{
  window.{BINDING}({{
    directive: event.effectiveDirective || event.violatedDirective,
    blocked: event.blockedURI,
    source: event.sourceFile,
    line: event.lineNumber,
  }});
}}, true);
"""


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    scheme = _WEB_SCHEMES.get(parts.scheme, parts.scheme)
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{parts.hostname}:{port}"


def leaves_origin(url: str, origin: str) -> bool:
    """Whether a request to ``url`` goes anywhere but ``origin`` (data:/blob: stay local)."""
    if urlsplit(url).scheme in _LOCAL_SCHEMES:
        return False
    return origin_of(url) != origin_of(origin)


def is_csp_violation(message: ConsoleMessage) -> bool:
    """Chromium reports each blocked load or script as a console error naming the policy."""
    return message.type == "error" and "Content Security Policy" in message.text


def horizontal_overflow(page: Page) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of the document; scrollWidth > clientWidth means the page
    scrolls sideways. ``page.evaluate`` goes through the DevTools protocol: the CSP allows it."""
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    return int(widths[0]), int(widths[1])


def widest_elements(page: Page, limit: int = 5) -> list[str]:
    """The elements that reach past the viewport's right edge (to say what to fix)."""
    found: list[str] = page.evaluate(
        """([limit]) => {
          const width = document.documentElement.clientWidth;
          const out = [];
          for (const el of document.body ? document.body.querySelectorAll("*") : []) {
            const right = el.getBoundingClientRect().right;
            if (right > width + 0.5) {
              const id = el.id ? "#" + el.id : "";
              const cls = el.classList.length ? "." + [...el.classList].join(".") : "";
              out.push(`${el.tagName.toLowerCase()}${id}${cls} (right edge ${Math.round(right)})`);
              if (out.length >= limit) break;
            }
          }
          return out;
        }""",
        [limit],
    )
    return found


def assert_no_horizontal_scroll(page: Page, width: int = PHONE_WIDTH, wait: float = 1.0) -> None:
    """At ``width`` px the page must not scroll sideways (polled up to ``wait`` s, for late
    layout); the viewport is put back afterwards."""
    before = page.viewport_size
    page.set_viewport_size({"width": width, "height": PHONE_HEIGHT})
    try:
        deadline = time.monotonic() + wait
        while True:
            scroll, client = horizontal_overflow(page)
            if scroll <= client:
                return
            if time.monotonic() > deadline:
                culprits = "; ".join(widest_elements(page)) or "none found"
                raise AssertionError(
                    f"{page.url} scrolls sideways at {width} px: scrollWidth {scroll} >"
                    f" clientWidth {client}; too wide: {culprits}"
                )
            time.sleep(0.05)
    finally:
        if before is not None:
            page.set_viewport_size(before)


@dataclass
class PageGuard:
    """Records, for one browser context, requests (and WebSockets) to any other origin than
    ``origin`` and every CSP violation, from the console and from the DOM event."""

    origin: str
    foreign_requests: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)
    check_width: bool = True  # at teardown, the open pages of the origin at 390 px

    def attach(self, context: BrowserContext) -> BrowserContext:
        context.on("request", self._on_request)
        context.on("console", self._on_console)
        context.on("page", self._on_page)
        for page in context.pages:
            self._on_page(page)
        context.expose_binding(BINDING, self._on_violation)
        context.add_init_script(LISTENER)
        self.contexts.append(context)
        return context

    def _on_page(self, page: Page) -> None:
        page.on("websocket", self._on_websocket)

    def _on_request(self, request: Request) -> None:
        if leaves_origin(request.url, self.origin):
            self.foreign_requests.append(f"{request.method} {request.url}")

    def _on_websocket(self, socket: WebSocket) -> None:
        if leaves_origin(socket.url, self.origin):
            self.foreign_requests.append(f"WebSocket {socket.url}")

    def _on_console(self, message: ConsoleMessage) -> None:
        if is_csp_violation(message):
            self.csp_violations.append(f"console: {message.text} ({message.location})")

    def _on_violation(self, _source: Any, report: dict[str, Any]) -> None:
        self.csp_violations.append(f"event: {report}")

    def open_pages(self) -> list[Page]:
        return [page for context in self.contexts for page in context.pages if not page.is_closed()]

    def settle(self) -> None:
        """A round trip to each open page, so events the browser sent before it have been
        delivered (Playwright dispatches them in order)."""
        for page in self.open_pages():
            # A page that is navigating or crashed has nothing more to say.
            with contextlib.suppress(PlaywrightError):
                page.evaluate("0")

    def problems(self) -> list[str]:
        self.settle()
        found = [f"request to another origin: {r}" for r in self.foreign_requests]
        found += [f"CSP violation: {v}" for v in self.csp_violations]
        if self.check_width:
            for page in self.open_pages():
                if leaves_origin(page.url, self.origin) or urlsplit(page.url).scheme != "http":
                    continue
                try:
                    assert_no_horizontal_scroll(page)
                except AssertionError as exc:
                    found.append(str(exc))
                except PlaywrightError:
                    pass  # navigating or crashed: nothing to measure
        return found

    def assert_clean(self) -> None:
        found = self.problems()
        if found:
            raise AssertionError("the page guard found:\n  " + "\n  ".join(found))
