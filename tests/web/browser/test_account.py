"""Page 11 in a browser: two-factor set-up and removal, and ending another session."""

from __future__ import annotations

import re
import time

import pyotp
from playwright.sync_api import Page, expect

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.guard import assert_no_horizontal_scroll
from tests.web.browser.helpers import login, make_customer, sign_in
from tests.web.browser.server import LiveServer


def test_enable_2fa_then_login_needs_a_code(
    page: Page, new_panel_context: PanelContexts, live_server: LiveServer
) -> None:
    user = make_customer(live_server)
    sign_in(page, live_server, user)
    page.goto(f"{live_server.url}/account/security")
    page.get_by_role("button", name="Set up two-factor authentication").click()
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    assert_no_horizontal_scroll(page)
    secret = page.locator("#totp-secret").inner_text()
    page.locator('input[name="code"]').fill("000000")
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("alert")).to_contain_text("incorrect")
    page.locator('input[name="code"]').fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    expect(page.get_by_role("button", name="Copy codes")).to_be_visible()
    # the next login needs a code
    user.totp_secret = secret
    user._last_step = int(time.time() // 30)  # the step just used to turn it on
    other = new_panel_context().new_page()
    login(other, live_server, user, remember=False)


def test_disable_2fa_needs_the_password_and_a_code(page: Page, live_server: LiveServer) -> None:
    user = make_customer(live_server, two_factor=True)
    login(page, live_server, user, remember=False)
    page.goto(f"{live_server.url}/account/security")
    page.get_by_text("Turn two-factor authentication off").click()
    page.locator('input[name="password"]').fill("not my password")
    page.locator('input[name="code"]').fill(user.totp_code())
    page.get_by_role("button", name="Turn off").click()
    expect(page.get_by_role("alert")).to_contain_text("password is incorrect")
    page.locator('input[name="password"]').fill(user.password)
    page.locator('input[name="code"]').fill("000000")
    page.get_by_role("button", name="Turn off").click()
    expect(page.get_by_role("alert")).to_contain_text("incorrect or was already used")
    page.locator('input[name="password"]').fill(user.password)
    page.locator('input[name="code"]').fill(user.recovery_codes[0])
    page.get_by_role("button", name="Turn off").click()
    expect(page.get_by_role("status").first).to_contain_text("Two-factor authentication is off")
    expect(page.get_by_role("button", name="Set up two-factor authentication")).to_be_visible()


def test_logging_out_another_session_kills_its_cookie(
    page: Page, new_panel_context: PanelContexts, live_server: LiveServer
) -> None:
    user = make_customer(live_server)
    other = new_panel_context(user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0").new_page()
    login(other, live_server, user, remember=False)
    login(page, live_server, user, remember=False)
    page.goto(f"{live_server.url}/account/security")
    row = page.locator("tr", has_text="Firefox on Linux")
    expect(page.locator("tr", has_text="this device")).to_have_count(1)
    assert_no_horizontal_scroll(page)
    row.get_by_role("button", name=re.compile("^Log out")).click()
    expect(page.get_by_role("status").first).to_contain_text("That session is logged out")
    expect(page.locator("tr", has_text="Firefox on Linux")).to_have_count(0)
    other.goto(f"{live_server.url}/account")
    expect(other).to_have_url(re.compile(rf"^{re.escape(live_server.url)}/login"))
    page.goto(f"{live_server.url}/account")
    expect(page).to_have_url(f"{live_server.url}/account")
