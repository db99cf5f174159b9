"""The staff pages of users in the browser (PANEL.md page 14): an admin's credit shows live on
the customer's open billing page and on the admin's own; the customer's instance statuses are
live on the user's page; support sees a user but has no button to change the role, and a
forged post is 403."""

from __future__ import annotations

from decimal import Decimal

from playwright.sync_api import Page, expect

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.guard import assert_no_horizontal_scroll
from tests.web.browser.helpers import Offer, make_customer, order_instance, sign_in, wait_status
from tests.web.browser.server import LiveServer
from vmcloud.compute import service as compute
from vmcloud.compute.models import Instance


def test_admin_credits_and_the_users_billing_page_shows_it_live(
    page: Page, live_server: LiveServer, new_panel_context: PanelContexts, fake_offer: Offer
) -> None:
    customer = make_customer(live_server, balance=Decimal("10.00"))
    vm = order_instance(live_server, customer, fake_offer, "credited-vm")
    wait_status(live_server, vm, "running")
    billing = new_panel_context().new_page()
    sign_in(billing, live_server, customer)
    billing.goto("/billing")
    expect(billing.locator("#balance")).to_have_text("9.00 USD")

    sign_in(page, live_server, make_customer(live_server, role="admin"))
    page.goto("/admin/users")
    search = page.get_by_label("Search users")
    search.fill(customer.email)
    search.press("Enter")
    page.get_by_role("link", name=customer.email).click()
    expect(page.locator("#user-balance")).to_have_text("9.00 USD")
    expect(page.locator(f"#user-instance-{vm} .badge")).to_have_text("running")
    assert_no_horizontal_scroll(page)

    page.get_by_label("Credit (USD)").fill("5.00")
    page.get_by_label("Reason").fill("goodwill")
    page.get_by_role("button", name="Credit", exact=True).click()
    expect(page.locator("#flashes")).to_contain_text("Credited 5.00 USD")
    expect(page.locator("#user-balance")).to_have_text("14.00 USD")
    expect(billing.locator("#balance")).to_have_text("14.00 USD")
    expect(billing.locator("#ledger")).to_contain_text("Credit: goodwill")

    # The customer's instance changes state: the admin's page follows without a reload.
    with live_server.transaction() as db:
        instance = db.get(Instance, vm)
        assert instance is not None
        compute.request_action(db=db, instance=instance, action="stop")
    expect(page.locator(f"#user-instance-{vm} .badge")).to_have_text("stopped")


def test_support_sees_a_user_but_cannot_change_the_role(
    page: Page, live_server: LiveServer
) -> None:
    customer = make_customer(live_server)
    sign_in(page, live_server, make_customer(live_server, role="support"))
    page.goto(f"/admin/users/{customer.id}")
    expect(page.locator("h1")).to_have_text(customer.email)
    expect(page.locator("#user-role")).to_have_text("customer")
    expect(page.locator('select[name="role"]')).to_have_count(0)
    expect(page.get_by_role("button", name="Save role and status")).to_have_count(0)
    expect(page.get_by_role("button", name="Credit", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Log out all sessions")).to_have_count(0)

    token = page.locator('input[name="csrftoken"]').first.get_attribute("value")
    assert token
    forged = page.request.post(
        f"{live_server.url}/admin/users/{customer.id}/account",
        form={"role": "admin", "status": "active", "csrftoken": token},
        max_redirects=0,
    )
    assert forged.status == 403
    page.reload()
    expect(page.locator("#user-role")).to_have_text("customer")
