"""Billing and subscriptions in the browser (PANEL.md pages 5 and 10): a top-up paid in a
second tab shows in the first with no reload; the limits; the ledger equals the API's;
cancelling renewal; no sideways scrolling at 390 px."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from playwright.sync_api import APIRequestContext, Page, expect

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.guard import assert_no_horizontal_scroll
from tests.web.browser.helpers import Customer, Offer, make_customer, sign_in
from tests.web.browser.server import LiveServer


def api_get(request: APIRequestContext, user: Customer, path: str) -> Any:
    tokens = request.post(
        "/api/v1/auth/login", data={"login": user.username, "password": user.password}
    )
    assert tokens.ok, tokens.text()
    auth = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    answer = request.get(path, headers=auth)
    assert answer.ok, answer.text()
    return answer.json(), auth


def test_a_top_up_paid_in_another_tab_shows_with_no_reload(
    page: Page, live_server: LiveServer, new_panel_context: PanelContexts
) -> None:
    user = make_customer(live_server, balance=Decimal("1.50"))
    sign_in(page, live_server, user)
    page.goto("/billing")
    expect(page.locator("#balance")).to_have_text("1.50 USD")
    assert_no_horizontal_scroll(page)

    other = new_panel_context().new_page()
    sign_in(other, live_server, user)
    other.goto("/billing/top-up")
    other.get_by_label("Amount (USD)").fill("20.00")
    other.get_by_role("button", name="Continue to payment").click()
    expect(other).to_have_url(re.compile(r"/billing/sandbox/sbx_[0-9a-f]{32}$"))
    # The first tab sees the pending top-up, then its completion and the new balance.
    expect(page.locator("#top-ups .badge-pending")).to_have_count(1)
    other.get_by_role("button", name="Pay").click()
    expect(other.get_by_role("heading", name="Payment received")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("21.50 USD")
    expect(page.locator("#top-ups .badge-completed")).to_have_count(1)
    expect(page.locator("#ledger [data-entry]")).to_have_count(2)
    other.get_by_role("link", name="Back to VMCloud").click()
    expect(other.locator("#balance")).to_have_text("21.50 USD")


def test_top_up_limits_are_shown_next_to_the_amount(page: Page, live_server: LiveServer) -> None:
    user = make_customer(live_server)
    sign_in(page, live_server, user)
    page.goto("/billing/top-up")
    page.get_by_label("Amount (USD)").fill("1000.01")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.locator("#e-amount")).to_have_text("between 5.00 and 1000.00")
    expect(page.get_by_label("Amount (USD)")).to_have_attribute("aria-invalid", "true")
    assert_no_horizontal_scroll(page)


def test_the_ledger_shown_is_the_apis(page: Page, live_server: LiveServer) -> None:
    user = make_customer(live_server, balance=Decimal("7.25"))
    sign_in(page, live_server, user)
    page.goto("/billing")
    listed, _ = api_get(page.request, user, "/api/v1/billing/transactions")
    rows = page.locator("#ledger [data-entry]")
    expect(rows).to_have_count(len(listed["items"]))
    assert [rows.nth(i).get_attribute("data-entry") for i in range(rows.count())] == [
        item["id"] for item in listed["items"]
    ]
    balance, _ = api_get(page.request, user, "/api/v1/billing/balance")
    expect(page.locator("#balance")).to_have_text(f"{balance['balance']} USD")


def test_cancel_renewal(page: Page, live_server: LiveServer, fake_offer: Offer) -> None:
    user = make_customer(live_server, balance=Decimal("20.00"))
    sign_in(page, live_server, user)
    _, auth = api_get(page.request, user, "/api/v1/billing/balance")
    order = {
        "name": "renewing",
        "product": fake_offer.plan,
        "region": fake_offer.region,
        "image": fake_offer.image,
        "billing_cycle": "monthly",
    }
    made = page.request.post("/api/v1/instances", data=order, headers=auth)
    assert made.ok, made.text()
    page.goto("/billing/subscriptions")
    row = page.locator("#subscriptions tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("renewing")
    assert_no_horizontal_scroll(page)
    row.get_by_role("button", name="Cancel renewal").click()
    expect(page.locator("#flashes")).to_contain_text("Renewal cancelled: renewing runs until")
    expect(row.get_by_role("button", name="Cancel renewal")).to_have_count(0)
    listed, _ = api_get(page.request, user, "/api/v1/subscriptions")
    assert listed["items"][0]["auto_renew"] is False
