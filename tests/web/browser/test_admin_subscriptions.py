"""The staff list of subscriptions in the browser (PANEL.md page 23): past-due ones first, and
a subscription falling due moves up live."""

from __future__ import annotations

import uuid
from decimal import Decimal

from playwright.sync_api import Page, expect

from tests.web.browser.helpers import Offer, make_customer, order_instance, sign_in
from tests.web.browser.server import LiveServer
from vmcloud.billing import dunning
from vmcloud.billing import subscriptions as subs
from vmcloud.core.clock import utcnow


def _fall_due(live: LiveServer, instance_id: uuid.UUID) -> uuid.UUID:
    """The subscription of ``instance_id`` goes past due, as the billing run does it."""
    with live.transaction() as db:
        sub = subs.live_for_instance(db=db, instance_id=instance_id)
        assert sub is not None
        dunning.past_due(db, sub, sub.price, utcnow())
        return sub.id


def _statuses(page: Page) -> list[str]:
    rows = page.locator("#admin-subscriptions tbody tr")
    found: list[str] = rows.evaluate_all("rows => rows.map(row => row.dataset.status)")
    return found


def test_past_due_listed_first(page: Page, live_server: LiveServer, fake_offer: Offer) -> None:
    owner = make_customer(live_server, balance=Decimal("30"))
    late_vm = order_instance(live_server, owner, fake_offer, "late-vm")
    soon_vm = order_instance(live_server, owner, fake_offer, "soon-late-vm")
    late = _fall_due(live_server, late_vm)
    sign_in(page, live_server, make_customer(live_server, role="support"))
    page.goto("/admin/subscriptions")

    late_row = page.locator(f"#admin-sub-{late}")
    expect(late_row).to_have_attribute("data-status", "past_due")
    expect(late_row).to_contain_text("UTC")  # its grace deadline
    statuses = _statuses(page)
    due = statuses.count("past_due")
    assert due >= 1 and statuses[:due] == ["past_due"] * due, statuses

    # Another one falls due: the list moves it up with no reload.
    soon = _fall_due(live_server, soon_vm)
    expect(page.locator(f"#admin-sub-{soon}")).to_have_attribute("data-status", "past_due")
    statuses = _statuses(page)
    due = statuses.count("past_due")
    assert statuses[:due] == ["past_due"] * due, statuses
    late_row.get_by_role("link", name=owner.email).click()
    expect(page.locator("h1")).to_have_text(owner.email)
