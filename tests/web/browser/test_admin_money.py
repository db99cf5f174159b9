"""Staff money pages in Chromium: an admin's partial refund of a top-up (the ledger page shows
the new entry live, and the balance still equals the ledger), and the audit page showing a
setting's change, old → new, as it happens."""

from __future__ import annotations

import uuid
from decimal import Decimal

from playwright.sync_api import Page, expect
from sqlalchemy import select

from tests.factories.billing import pending_payment
from tests.web.browser.conftest import PanelContexts
from tests.web.browser.helpers import Customer, make_customer, off_loop, sign_in
from tests.web.browser.server import LiveServer
from vmcloud.accounts.models import User
from vmcloud.billing import ledger
from vmcloud.billing.models import Transaction
from vmcloud.site_settings import service as site_settings


def paid_top_up(live: LiveServer, customer: Customer, amount: str) -> uuid.UUID:
    """A top-up the sandbox confirmed: a completed payment on the customer's balance."""

    def pay() -> uuid.UUID:
        with live.transaction() as db:
            entry = pending_payment(db, customer.id, "sandbox", f"sbx_{uuid.uuid4().hex}", amount)
            ledger.complete(db=db, entry_id=entry.id)
            return entry.id

    return off_loop(pay)


def ledger_state(live: LiveServer, user_id: uuid.UUID) -> tuple[Decimal, list[object]]:
    def read() -> tuple[Decimal, list[object]]:
        with live.transaction() as db:
            balance = db.scalar(select(User.balance).where(User.id == user_id))
            return Decimal(balance or 0), list(ledger.verify(db=db, user_id=user_id))

    return off_loop(read)


def test_a_partial_refund_leaves_ledger_and_balance_agreeing(
    page: Page, live_server: LiveServer, new_panel_context: PanelContexts
) -> None:
    customer = make_customer(live_server)
    payment_id = paid_top_up(live_server, customer, "20.00")
    admin = make_customer(live_server, role="admin")
    sign_in(page, live_server, admin, landing="/instances")
    page.goto(f"/admin/transactions?user={customer.email}")
    expect(page.locator("#ledger-region [data-entry]")).to_have_count(1)
    expect(page.locator("#balance-check [data-balance]")).to_have_text("20.00 USD")

    other = new_panel_context().new_page()
    sign_in(other, live_server, admin, landing="/instances")
    other.goto(f"/admin/transactions/{payment_id}")
    other.get_by_label("Amount (USD)").fill("7.50")
    other.get_by_label("Reason").fill("partly unhappy")
    other.get_by_role("button", name="Refund").click()
    expect(other.locator("#flashes")).to_contain_text("Refunded 7.50 USD")
    expect(other.locator("#refunds [data-refund]")).to_have_count(1)
    expect(other.locator("#refundable")).to_contain_text("12.50 USD")

    # The first tab: the refund's entry arrived without a reload, and the balance agrees.
    expect(page.locator('#ledger-region [data-type="debit"]')).to_have_count(1)
    expect(page.locator("#balance-check [data-balance]")).to_have_text("12.50 USD")
    expect(page.locator("#balance-check")).to_contain_text("agrees")
    balance, mismatches = ledger_state(live_server, customer.id)
    assert balance == Decimal("12.50") and mismatches == []
    refunds = off_loop(_refunds_of, live_server, payment_id)
    assert refunds == [("debit", Decimal("7.50"))]


def _refunds_of(live: LiveServer, payment_id: uuid.UUID) -> list[tuple[str, Decimal]]:
    with live.transaction() as db:
        rows = db.scalars(select(Transaction).where(Transaction.refund_of == payment_id))
        return [(row.type, row.amount) for row in rows]


def _set_support_email(live: LiveServer, value: str) -> str:
    with live.transaction() as db:
        row = site_settings.update_setting(db=db, key="site.support_email", value=value)
        return row.value or ""


def test_a_setting_change_shows_up_with_its_diff(page: Page, live_server: LiveServer) -> None:
    admin = make_customer(live_server, role="admin")
    sign_in(page, live_server, admin, landing="/instances")
    page.goto("/admin/audit?entity=setting")
    expect(page.locator("#audit-rows")).to_be_visible()
    before = page.locator(".audit-entry").count()
    new = f"help-{uuid.uuid4().hex[:8]}@example.com"
    old = off_loop(_read_support_email, live_server)
    off_loop(_set_support_email, live_server, new)
    try:
        newest = page.locator(".audit-entry").first
        expect(newest).to_have_attribute("data-action", "setting.update")
        expect(newest.locator('[data-field="value"] .new')).to_have_text(new)
        expect(newest.locator('[data-field="value"] .old')).to_have_text(old)
        expect(page.locator(".audit-entry")).to_have_count(min(before + 1, 50))
    finally:
        off_loop(_set_support_email, live_server, old)


def _read_support_email(live: LiveServer) -> str:
    with live.transaction() as db:
        rows = {row.key: row.value for row in site_settings.list_settings(db=db)}
        return rows["site.support_email"] or ""
