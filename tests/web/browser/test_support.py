"""Support in the browser (PANEL.md page 9): a ticket opened in the panel with an instance and
a file; staff answer through the API from another context, and the customer's page shows the
reply and the status with no reload, never the internal note; the attachment limit; rating
once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from playwright.sync_api import APIRequestContext, Page, expect

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.guard import assert_no_horizontal_scroll
from tests.web.browser.helpers import Customer, Offer, make_customer, order_instance, sign_in
from tests.web.browser.server import LiveServer
from vmcloud.accounts.models import User
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import ATTACHMENT_MAX_BYTES
from vmcloud.support import service
from vmcloud.support.schemas import TicketCreate

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
NOTE = "INTERNAL: this customer is on the old kernel"


def open_ticket(
    live: LiveServer, user: Customer, instance_id: uuid.UUID | None = None
) -> uuid.UUID:
    """A ticket of ``user``'s, opened as the API opens one, committed."""
    with live.transaction() as db:
        owner = db.get(User, user.id)
        assert owner is not None
        body = TicketCreate(subject="It hangs", description="At boot.", instance_id=instance_id)
        return service.open_ticket(db=db, user=owner, body=body).id


class Staff:
    """A support agent working a ticket through the API, from a context of its own."""

    def __init__(self, request: APIRequestContext, agent: Customer) -> None:
        tokens = request.post(
            "/api/v1/auth/login", data={"login": agent.username, "password": agent.password}
        )
        assert tokens.ok, tokens.text()
        self.request = request
        self.auth = {"Authorization": f"Bearer {tokens.json()['access_token']}"}

    def reply(self, ticket: str, message: str, *, internal: bool = False) -> None:
        body = {"message": message, "is_internal": internal}
        sent = self.request.post(f"/api/v1/tickets/{ticket}/messages", data=body, headers=self.auth)
        assert sent.status == 201, sent.text()

    def set_status(self, ticket: str, status: str) -> None:
        changed = self.request.patch(
            f"/api/v1/admin/tickets/{ticket}", data={"status": status}, headers=self.auth
        )
        assert changed.ok, changed.text()


def test_a_ticket_round_trip_with_staff_in_another_context(
    page: Page, live_server: LiveServer, new_panel_context: PanelContexts, fake_offer: Offer
) -> None:
    user = make_customer(live_server, balance=Decimal("30"))
    order_instance(live_server, user, fake_offer, "web-1")
    sign_in(page, live_server, user)
    page.get_by_role("link", name="Support").click()
    page.get_by_role("button", name="Open a ticket").click()
    page.get_by_label("Subject").fill("Web server down")
    page.get_by_label("Category").select_option("technical")
    choice = page.locator("#f-instance_id option", has_text="web-1").get_attribute("value")
    page.get_by_label("Instance").select_option(choice)
    page.get_by_label("What happened?").fill("nginx answers 502 since this morning.")
    page.locator("#f-files").set_input_files(
        {"name": "error.png", "mimeType": "image/png", "buffer": PNG}
    )
    page.get_by_role("button", name="Open ticket").click()
    expect(page.get_by_role("heading", name="Web server down")).to_be_visible()
    expect(page.locator("#ticket-thread")).to_contain_text("error.png")
    expect(page.locator("#ticket-status")).to_contain_text("web-1")
    expect(page.locator("#ticket-status .badge")).to_have_text("open")
    assert_no_horizontal_scroll(page)
    ticket = page.url.rsplit("/", 1)[-1]

    agent = make_customer(live_server, role="support")
    staff = Staff(new_panel_context().request, agent)
    staff.reply(ticket, NOTE, internal=True)
    staff.reply(ticket, "We restarted the proxy; does it work now?")
    # The reply arrives with no reload; the note, sent before it, never does.
    expect(page.locator("#ticket-thread")).to_contain_text("We restarted the proxy")
    expect(page.locator("#ticket-status .badge")).to_have_text("in progress")
    staff.set_status(ticket, "resolved")
    expect(page.locator("#ticket-status .badge")).to_have_text("resolved")
    expect(page.get_by_text("How was the help?")).to_be_visible()
    assert NOTE not in page.content()

    page.get_by_label("5", exact=True).check()
    page.get_by_role("button", name="Rate").click()
    expect(page.locator("#rating-given")).to_have_text("You rated this help 5 of 5. Thank you.")
    expect(page.get_by_role("button", name="Rate")).to_have_count(0)  # rated once
    assert NOTE not in page.content()


@pytest.fixture
def small_attachments(live_server: LiveServer) -> Iterator[int]:
    with live_server.transaction() as db:
        before = site_settings.get(db, ATTACHMENT_MAX_BYTES)
        site_settings.update_setting(db=db, key="support.attachment_max_bytes", value=1024)
    yield 1024
    with live_server.transaction() as db:
        site_settings.update_setting(db=db, key="support.attachment_max_bytes", value=before)


def test_an_oversize_attachment_shows_the_limit(
    page: Page, live_server: LiveServer, small_attachments: int
) -> None:
    user = make_customer(live_server)
    ticket = open_ticket(live_server, user)
    sign_in(page, live_server, user)
    page.goto(f"/support/{ticket}")
    expect(page.locator("#h-files")).to_contain_text("Up to 5 files")
    page.get_by_label("Message").fill("Here is the full log.")
    page.locator("#f-files").set_input_files(
        {"name": "big.txt", "mimeType": "text/plain", "buffer": b"x" * (small_attachments + 1)}
    )
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#form-problem")).to_have_text(
        f"big.txt is larger than {small_attachments} bytes."
    )
    expect(page.get_by_label("Message")).to_have_value("Here is the full log.")
    expect(page.locator("#ticket-thread .thread-item")).to_have_count(1)  # the description only
