"""Staff overview and plans in Chromium: the overview's counters follow changes made elsewhere
without a reload; an admin's new plan is on the customer's order form; a bad price is shown
next to its field."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.helpers import (
    MARK,
    STILL_MARKED,
    Offer,
    make_customer,
    order_instance,
    sign_in,
)
from tests.web.browser.server import LiveServer
from tests.web.browser.test_support import open_ticket

pytestmark = pytest.mark.browser


def count(page: Page, name: str) -> int:
    return int(page.locator(f'[data-count="{name}"]').inner_text())


def test_the_overviews_counters_change_live(
    page: Page, live_server: LiveServer, fake_offer: Offer
) -> None:
    customer = make_customer(live_server, balance=Decimal("30"))
    sign_in(page, live_server, make_customer(live_server, role="support"))
    page.goto("/admin")
    expect(page.locator("#overview-counters")).to_be_visible()
    tickets, unassigned, instances = (
        count(page, "tickets-open"),
        count(page, "tickets-unassigned"),
        count(page, "instances"),
    )
    expect(page.locator("#recent-audit")).to_have_count(0)  # support: no audit log
    page.evaluate(MARK)

    open_ticket(live_server, customer)
    expect(page.locator('[data-count="tickets-open"]')).to_have_text(str(tickets + 1))
    expect(page.locator('[data-count="tickets-unassigned"]')).to_have_text(str(unassigned + 1))

    order_instance(live_server, customer, fake_offer, "counted-live")
    expect(page.locator('[data-count="instances"]')).to_have_text(str(instances + 1))
    assert page.evaluate(STILL_MARKED) == "yes"  # the same document: no reload


def fill_plan(page: Page, name: str, slug: str, monthly: str) -> None:
    page.locator("#f-name").fill(name)
    page.locator("#f-slug").fill(slug)
    page.locator("#f-vcpus").fill("1")
    page.locator("#f-memory_mb").fill("256")
    page.locator("#f-disk_gb").fill("2")
    page.locator("#f-price_hourly").fill("")
    page.locator("#f-price_monthly").fill(monthly)
    page.locator("#f-features").fill("1 IPv4 address\nNVMe")
    page.locator("#f-sort_order").fill("-100000")  # first on the order form


def test_an_invalid_price_shows_a_field_error(page: Page, live_server: LiveServer) -> None:
    sign_in(page, live_server, make_customer(live_server, role="admin"))
    page.goto("/admin/products/new")
    slug = f"bad-price-{uuid.uuid4().hex[:8]}"
    fill_plan(page, "Bad price", slug, "4.001")
    page.get_by_role("button", name="Create plan").click()
    error = page.locator("#e-price_monthly")
    expect(error).to_contain_text("at most 2 decimal places")
    expect(page.locator("#f-price_monthly")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-price_monthly")).to_have_value("4.001")  # what was typed stays
    expect(page.locator("#f-slug")).to_have_value(slug)


def test_a_new_plan_appears_in_the_order_form(
    page: Page, live_server: LiveServer, new_panel_context: PanelContexts
) -> None:
    sign_in(page, live_server, make_customer(live_server, role="admin"))
    page.goto("/admin/products")
    page.get_by_role("button", name="New plan").click()
    name = f"Browser plan {uuid.uuid4().hex[:6]}"
    fill_plan(page, name, f"browser-plan-{uuid.uuid4().hex[:8]}", "3.50")
    page.get_by_role("button", name="Create plan").click()
    expect(page.locator(".flash-ok")).to_contain_text(f"{name} created")
    row = page.locator("#plans tr", has_text=name)
    expect(row).to_contain_text("3.50/mo")
    expect(row).to_contain_text("active")

    shopper = new_panel_context().new_page()
    sign_in(shopper, live_server, make_customer(live_server, balance=Decimal("10")))
    shopper.goto("/instances/new")
    expect(shopper.locator("label.plan", has_text=name)).to_contain_text("3.50")
