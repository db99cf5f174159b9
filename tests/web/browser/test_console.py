"""The serial console in Chromium: typing at the real tiny guest's shell and reading the answer
in xterm.js, one tab at a time, and the refusals (a WebSocket from another origin, another
customer's console)."""

from __future__ import annotations

import re
import socket
import time
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page, expect

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.helpers import Offer, make_customer, order_instance, sign_in, wait_status
from tests.web.browser.server import LiveServer
from vmcloud.compute import nodes
from vmcloud.compute.models import Node
from vmcloud.compute.tiny_image import READY_MARKER

SESSION_COOKIE = "__Host-vmc_session"


def _guest_ready(live: LiveServer, offer: Offer, instance_id: uuid.UUID) -> None:
    with live.transaction() as db:
        node = db.get(Node, offer.node_id)
        assert node is not None
    driver = nodes.driver_for(node)
    deadline = time.monotonic() + 60
    while READY_MARKER not in driver.console_output(instance_id):
        assert time.monotonic() < deadline, "the tiny guest did not come up"
        time.sleep(0.25)


def _row(page: Page, text: str) -> object:
    """A line of the terminal (xterm's DOM renderer) that holds exactly ``text``."""
    return page.locator(".xterm-rows > div", has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))


def test_typing_at_the_tiny_guests_shell_shows_the_answer(
    page: Page, live_server: LiveServer, libvirt_live_node: Offer, new_panel_context: PanelContexts
) -> None:
    user = make_customer(live_server, balance=Decimal("5.00"))
    instance_id = order_instance(live_server, user, libvirt_live_node, "console-vm")
    wait_status(live_server, instance_id, "running", timeout=60)
    _guest_ready(live_server, libvirt_live_node, instance_id)
    sign_in(page, live_server, user)
    page.goto(f"/instances/{instance_id}/console")
    state = page.locator("#console-state")
    expect(state).to_have_text("Connected")
    page.locator("#terminal").click()
    page.keyboard.type("echo $((6*7))")
    page.keyboard.press("Enter")
    expect(_row(page, "42")).to_have_count(1)  # type: ignore[arg-type]

    # A second tab is told the console is held; once the first lets go, it reconnects.
    other: BrowserContext = new_panel_context()
    second = other.new_page()
    sign_in(second, live_server, user)
    second.goto(f"/instances/{instance_id}/console")
    expect(second.locator("#console-state")).to_contain_text("open in another tab")
    page.goto("/instances")
    second.get_by_role("button", name="Reconnect").click()
    expect(second.locator("#console-state")).to_have_text("Connected")
    second.locator("#terminal").click()
    second.keyboard.type("echo $((5*5))")
    second.keyboard.press("Enter")
    expect(_row(second, "25")).to_have_count(1)  # type: ignore[arg-type]


def _handshake(live: LiveServer, path: str, origin: str, session: str) -> int:
    """The HTTP status answering a raw WebSocket handshake."""
    address = urlsplit(live.url)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n"
        f"Cookie: {SESSION_COOKIE}={session}\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        conn.sendall(request.encode())
        status_line = conn.recv(4096).split(b"\r\n", 1)[0]
    return int(status_line.split()[1])


def _session_of(page: Page) -> str:
    [value] = [c["value"] for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    return str(value)


def test_a_foreign_origin_is_refused_and_another_users_console_is_404(
    page: Page, live_server: LiveServer, fake_offer: Offer, new_panel_context: PanelContexts
) -> None:
    owner = make_customer(live_server, balance=Decimal("5.00"))
    instance_id = order_instance(live_server, owner, fake_offer, "not-yours")
    owners_page = new_panel_context().new_page()
    sign_in(owners_page, live_server, owner)
    session = _session_of(owners_page)
    path = f"/instances/{instance_id}/console/ws"
    # The owner's own cookie, sent by a page of another site: refused before the handshake.
    assert _handshake(live_server, path, "http://evil.example", session) == 403
    assert _handshake(live_server, path, "null", session) == 403

    intruder = make_customer(live_server)
    sign_in(page, live_server, intruder)
    answer = page.goto(f"/instances/{instance_id}/console")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_be_visible()
    assert _handshake(live_server, path, live_server.url, _session_of(page)) == 404
