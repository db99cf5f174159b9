"""Staff pages 20 and 22 in Chromium: an admin adds a pool and reserves one of its addresses,
orders fill the pool while its page counts them live, and the reserved address is never
leased; an admin turns registration off and a second browser's sign-up page is closed."""

from __future__ import annotations

import uuid
from decimal import Decimal

from playwright.sync_api import Page, expect
from sqlalchemy import select

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.guard import assert_no_horizontal_scroll
from tests.web.browser.helpers import Offer, make_customer, order_instance, sign_in
from tests.web.browser.server import LiveServer
from vmcloud.compute.models import Instance
from vmcloud.site_settings import service as site_settings


def test_a_reserved_ip_is_never_leased(
    page: Page, live_server: LiveServer, fake_offer: Offer
) -> None:
    admin = make_customer(live_server, role="admin")
    sign_in(page, live_server, admin, landing="/instances")
    page.goto("/admin/ip-pools")
    # First by name in the region, so the next orders take its addresses.
    name = f"0-rsv-{uuid.uuid4().hex[:6]}"
    page.get_by_label("Name").fill(name)
    page.get_by_label("Network (CIDR)").fill("198.18.200.0/29")
    page.get_by_label("Gateway (optional)").fill("198.18.200.1")
    page.get_by_role("button", name="Add pool").click()
    expect(page.locator("h1")).to_have_text(name)
    pool_url = page.url

    page.get_by_label("Reserve an address").fill("198.18.200.3")
    page.get_by_role("button", name="Reserve", exact=True).click()
    expect(page.locator("#reserved-list")).to_contain_text("198.18.200.3")
    expect(page.locator("#pool-usage .pool-free")).to_have_text("4")
    assert_no_horizontal_scroll(page)

    customer = make_customer(live_server, balance=Decimal("30"))
    ids = [order_instance(live_server, customer, fake_offer, f"rsv-{n}") for n in range(4)]
    # The open page hears the orders: every host but the gateway and the reserved one is used.
    expect(page.locator("#pool-usage .pool-used")).to_have_text("4")
    expect(page.locator("#pool-usage .pool-free")).to_have_text("0")
    with live_server.transaction() as db:
        addresses = set(db.scalars(select(Instance.ip_address).where(Instance.id.in_(ids))))
    assert addresses == {"198.18.200.2", "198.18.200.4", "198.18.200.5", "198.18.200.6"}
    for address in sorted(addresses):
        expect(page.locator("#pool-leases")).to_contain_text(address)

    # Disabled, so the rest of the run's orders go to the server's own pool.
    page.goto(pool_url)
    page.get_by_role("button", name="Disable pool").click()
    expect(page.locator("#pool-status")).to_have_text("disabled")


def test_turning_registration_off_closes_sign_up(
    page: Page, live_server: LiveServer, new_panel_context: PanelContexts
) -> None:
    admin = make_customer(live_server, role="admin")
    sign_in(page, live_server, admin, landing="/instances")
    page.goto("/admin/settings")
    assert_no_horizontal_scroll(page)
    box = page.locator("#s-auth\\.registration_enabled input[type=checkbox]")
    expect(box).to_be_checked()
    try:
        box.uncheck()
        page.locator("#s-auth\\.registration_enabled button").click()
        expect(page.locator(".flash")).to_contain_text("auth.registration_enabled is saved")
        expect(
            page.locator("#s-auth\\.registration_enabled input[type=checkbox]")
        ).not_to_be_checked()

        visitor = new_panel_context().new_page()
        visitor.goto("/signup")
        expect(visitor.locator("h1")).to_have_text("Registration is closed")
    finally:
        with live_server.transaction() as db:  # the other sign-up tests need it open
            site_settings.update_setting(db=db, key="auth.registration_enabled", value=True)
