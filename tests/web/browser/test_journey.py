"""A new customer's whole first visit, in Chromium, on the machine's real libvirt: sign up →
the mail in the local mailbox → verify → log in → top up in the sandbox → order an hourly VM →
watch it reach ``running`` on its page with no reload → stop → start → delete.

It also takes the README's screenshot of the instance page (``docs/panel-instance.png``, written
there when ``VMCLOUD_SCREENSHOTS=1``; elsewhere into the test's own directory)."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.web.browser.guard import assert_no_horizontal_scroll
from tests.web.browser.helpers import (
    MARK,
    STILL_MARKED,
    Offer,
    node_named,
    wait_for_token,
    wait_status,
)
from tests.web.browser.server import LiveServer
from vmcloud.compute import nodes

REAL_VM = 120_000  # ms: the tiny guest boots and stops in seconds; libvirt may take longer
SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "panel-instance.png"


def _screenshot(page: Page, tmp_path: Path) -> None:
    target = SCREENSHOT if os.environ.get("VMCLOUD_SCREENSHOTS") == "1" else tmp_path / "i.png"
    page.set_viewport_size({"width": 1100, "height": 760})
    page.screenshot(path=str(target), caret="initial")  # "hide" styles every input
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_new_customer_signs_up_pays_and_runs_a_real_vm(
    page: Page, live_server: LiveServer, libvirt_live_node: Offer, tmp_path: Path
) -> None:
    name = f"journey{int(time.time() * 1000) % 10**9}"
    email = f"{name}@example.com"
    password = "a long enough password"

    # Sign up, confirm the address from the mail, log in.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_role("link", name="Create an account").click()
    page.locator('input[name="email"]').fill(email)
    page.locator('input[name="username"]').fill(name)
    page.locator('input[name="password"]').fill(password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    token = wait_for_token(live_server, email)
    mail = live_server.mailbox.to(email)[-1].get_content()
    link = re.search(r"https?://[^/\s]+(/verify-email\?token=\S+)", mail)
    assert link and token in link.group(1), "the verification mail links to the panel's page"
    page.goto(link.group(1))
    page.get_by_role("button", name="Confirm my email address").click()
    page.locator('input[name="login"]').fill(email)
    page.locator('input[name="password"]').fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/instances$"))
    expect(page.get_by_text("Create your first VM")).to_be_visible()

    # Top up 20.00 through the sandbox checkout.
    page.goto("/billing/top-up")
    page.get_by_label("Amount (USD)").fill("20.00")
    page.get_by_role("button", name="Continue to payment").click()
    page.get_by_role("button", name="Pay").click()
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    page.get_by_role("link", name="Back to VMCloud").click()
    expect(page.locator("#balance")).to_have_text("20.00 USD")

    # Order an hourly VM; its page shows provisioning live until it runs.
    page.goto("/instances/new")
    page.locator(f'input[name="product"][value="{libvirt_live_node.plan}"]').check()
    page.locator('input[name="billing_cycle"][value="hourly"]').check()
    page.locator('input[name="name"]').fill("first-vm")
    page.get_by_role("button", name="Create instance").click()
    expect(page).to_have_url(re.compile(r"/instances/[0-9a-f-]{36}$"))
    instance_id = uuid.UUID(page.url.rsplit("/", 1)[1])
    page.evaluate(MARK)
    badge = page.locator("#instance-status .badge")
    expect(badge).to_have_text("running", timeout=REAL_VM)
    assert page.evaluate(STILL_MARKED) == "yes"  # no reload: the stream brought it
    expect(page.locator("#instance-ip")).to_contain_text(re.compile(r"\d+\.\d+\.\d+\.\d+"))
    assert_no_horizontal_scroll(page)
    _screenshot(page, tmp_path)

    # Stop, start, delete — each state arriving live.
    page.get_by_role("button", name="Stop first-vm").click()
    expect(badge).to_have_text("stopped", timeout=REAL_VM)
    page.get_by_role("button", name="Start first-vm").click()
    expect(badge).to_have_text("running", timeout=REAL_VM)
    assert page.evaluate(STILL_MARKED) == "yes"
    page.locator("summary", has_text="Delete this instance").click()
    page.locator('input[name="confirm_name"]').fill("first-vm")
    page.get_by_role("button", name="Delete first-vm").click()
    expect(page).to_have_url(re.compile(r"/instances$"))
    wait_status(live_server, instance_id, "deleted", timeout=REAL_VM / 1000)
    driver = nodes.driver_for(node_named(live_server, libvirt_live_node.node_name))
    assert instance_id not in driver.list()
