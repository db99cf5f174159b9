"""The staff ticket queue in the browser (PANEL.md page 13): a support user handles a ticket
from the live queue (assign, note, reply with a canned reply) while the customer's context
sees the reply and never the note."""

from __future__ import annotations

import uuid

from playwright.sync_api import Page, expect

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.helpers import MARK, STILL_MARKED, Customer, make_customer, sign_in
from tests.web.browser.server import LiveServer
from vmcloud.accounts.models import User
from vmcloud.support import service
from vmcloud.support.schemas import TicketCreate

NOTE = "INTERNAL: second time this month, check the host"
NOTE_LABEL = "Internal note — customers never see this"


def _open(live: LiveServer, user: Customer, subject: str) -> uuid.UUID:
    """A ticket of ``user``'s, opened as the API opens one (announced at commit)."""
    with live.transaction() as db:
        owner = db.get(User, user.id)
        assert owner is not None
        body = TicketCreate(subject=subject, description="Nothing answers on port 22.")
        return service.open_ticket(db=db, user=owner, body=body).id


def test_support_handles_a_ticket_from_the_live_queue(
    page: Page, live_server: LiveServer, new_panel_context: PanelContexts
) -> None:
    agent = make_customer(live_server, role="support")
    customer = make_customer(live_server)
    sign_in(page, live_server, agent)
    page.goto("/admin/tickets")
    expect(page.get_by_role("heading", name="Tickets")).to_be_visible()
    page.evaluate(MARK)

    # A new ticket appears in the open queue without a reload.
    subject = f"SSH refused {uuid.uuid4().hex[:6]}"
    ticket = _open(live_server, customer, subject)
    row = page.locator(f"#queue-{ticket}")
    expect(row).to_contain_text(subject)
    expect(row).to_contain_text(customer.username)
    expect(row).to_contain_text("unassigned")
    assert page.evaluate(STILL_MARKED) == "yes"

    mine = new_panel_context().new_page()
    sign_in(mine, live_server, customer)
    mine.goto(f"/support/{ticket}")
    expect(mine.locator("#ticket-status .badge")).to_have_text("open")

    row.get_by_role("link", name=subject).click()
    expect(page.get_by_role("heading", name=subject)).to_be_visible()
    page.get_by_role("button", name="Assign to me").click()
    expect(page.locator("#ticket-assignee")).to_have_text("assigned to you")
    # The live stream can show the assignee before the form's own answer has replaced the
    # page; typing before that answer lands loses the text (a note posted empty).
    expect(page.locator("#flashes")).to_contain_text("Assigned to you.")

    page.locator("#f-message").fill(NOTE)
    page.get_by_role("button", name="Add internal note").click()
    note = page.locator("#ticket-thread .thread-item.note")
    expect(note).to_contain_text(NOTE)
    expect(note).to_contain_text(NOTE_LABEL)

    # A canned reply fills the message, to edit before sending.
    page.locator("#f-canned").select_option(label="Looking into it")
    message = page.locator("#f-message")
    expect(message).to_have_value(
        "Thank you for reaching out. We are looking into this now and will get back to you"
        " as soon as we know more."
    )
    message.fill("Hello! " + message.input_value())
    page.get_by_role("button", name="Send reply to customer").click()
    expect(page.locator("#ticket-thread")).to_contain_text("Hello! Thank you for reaching out.")
    expect(page.locator("#ticket-status .badge")).to_have_text("in progress")

    # The customer's open page gets the reply and the new status, never the note.
    expect(mine.locator("#ticket-thread")).to_contain_text("Hello! Thank you for reaching out.")
    expect(mine.locator("#ticket-status .badge")).to_have_text("in progress")
    assert NOTE not in mine.content() and NOTE_LABEL not in mine.content()
