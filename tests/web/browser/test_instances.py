"""The instance pages in a browser (PANEL.md pages 2, 3 and 4): status changes arrive live
in the same document, an order lands on its instance's page and sees it running, a double
submit creates one instance, power works with JavaScript off; one flagship test on the real
tiny libvirt VM."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.guard import assert_no_horizontal_scroll
from tests.web.browser.helpers import (
    MARK,
    STILL_MARKED,
    Offer,
    client_address,
    make_customer,
    node_named,
    order_instance,
    sign_in,
    wait_status,
)
from tests.web.browser.server import LiveServer
from vmcloud.compute import nodes
from vmcloud.compute import service as compute
from vmcloud.compute.drivers.fake import FakeDriver
from vmcloud.compute.models import Instance
from vmcloud.web.customer import instances_order


def _request(live: LiveServer, instance_id: uuid.UUID, action: str) -> None:
    with live.transaction() as db:
        instance = db.get(Instance, instance_id, with_for_update=True)
        assert instance is not None
        compute.request_action(db=db, instance=instance, action=action)


@pytest.fixture
def gate(live_server: LiveServer, fake_offer: Offer) -> Iterator[Callable[[str], threading.Event]]:
    """Holds the fake hypervisor's ``create`` or ``start`` until the test sets the event it
    returns, so the page can be seen in the transitional state first."""
    driver = nodes.driver_for(node_named(live_server, fake_offer.node_name))
    assert isinstance(driver, FakeDriver)
    held: list[tuple[str, threading.Event]] = []

    def hold(method: str) -> threading.Event:
        release = threading.Event()
        original = getattr(type(driver), method)

        def gated(*args: object, **kwargs: object) -> None:
            release.wait(20)
            original(driver, *args, **kwargs)

        setattr(driver, method, gated)
        held.append((method, release))
        return release

    yield hold
    for method, release in held:
        release.set()
        driver.__dict__.pop(method, None)


def test_start_on_a_stopped_vm_turns_running_in_the_same_document(
    page: Page, live_server: LiveServer, fake_offer: Offer, gate: Callable[[str], threading.Event]
) -> None:
    user = make_customer(live_server, balance=Decimal("50"))
    instance_id = order_instance(live_server, user, fake_offer, "starter")
    wait_status(live_server, instance_id, "running")
    _request(live_server, instance_id, "stop")
    wait_status(live_server, instance_id, "stopped")
    sign_in(page, live_server, user)
    page.goto(f"/instances/{instance_id}")
    badge = page.locator("#instance-status .badge")
    expect(badge).to_have_text("stopped")
    expect(page.get_by_role("button", name="Stop starter")).to_be_disabled()
    page.evaluate(MARK)
    release = gate("start")
    page.get_by_role("button", name="Start starter").click()
    expect(badge).to_have_text("starting")
    expect(page.get_by_role("button", name="Start starter")).to_be_disabled()
    release.set()
    expect(badge).to_have_text("running")
    expect(page.get_by_role("button", name="Stop starter")).to_be_enabled()
    expect(page.locator("#instance-activity")).to_contain_text("starting → running")
    assert page.evaluate(STILL_MARKED) == "yes"


def test_a_vm_created_via_the_api_appears_and_turns_running_with_no_reload(
    page: Page, live_server: LiveServer, fake_offer: Offer, gate: Callable[[str], threading.Event]
) -> None:
    user = make_customer(live_server, balance=Decimal("50"))
    order_instance(live_server, user, fake_offer, "older")
    sign_in(page, live_server, user)
    expect(page.locator("#instance-rows tr").first).to_contain_text("older")
    page.evaluate(MARK)
    release = gate("create")
    with httpx.Client(
        base_url=live_server.url, headers={"X-Forwarded-For": client_address()}
    ) as api:
        tokens = api.post(
            "/api/v1/auth/login", json={"login": user.username, "password": user.password}
        ).json()
        created = api.post(
            "/api/v1/instances",
            headers={"Authorization": f"Bearer {tokens['access_token']}", "Idempotency-Key": "k1"},
            json={
                "name": "from-api",
                "product": fake_offer.plan,
                "region": fake_offer.region,
                "image": fake_offer.image,
                "billing_cycle": "hourly",
            },
        )
    assert created.status_code == 202, created.text
    row = page.locator(f"#instance-{created.json()['id']}")
    expect(page.locator("#instance-rows tr").first).to_contain_text("from-api")  # at the top
    expect(row.locator(".badge")).to_have_text(re.compile("^(pending|provisioning)$"))
    release.set()
    expect(row.locator(".badge")).to_have_text("running")
    expect(row).to_contain_text(created.json()["ip_address"])
    assert page.evaluate(STILL_MARKED) == "yes"
    assert_no_horizontal_scroll(page)


def test_order_hourly_lands_on_the_instance_page_and_sees_it_running(
    page: Page, live_server: LiveServer, fake_offer: Offer
) -> None:
    user = make_customer(live_server, balance=Decimal("20"))
    sign_in(page, live_server, user)
    page.get_by_role("button", name="Create your first VM").click()
    expect(page).to_have_url(re.compile(r"/instances/new$"))
    page.locator(f'input[name="product"][value="{fake_offer.plan}"]').check()
    page.locator('input[name="billing_cycle"][value="hourly"]').check()
    expect(page.locator("#preview")).to_contain_text("0.002 USD/h")  # swapped in by htmx
    expect(page.locator("#preview")).to_contain_text("at most 1.00 USD in a month")
    page.locator('input[name="name"]').fill("hourly-1")
    assert_no_horizontal_scroll(page)
    page.get_by_role("button", name="Create instance").click()
    expect(page).to_have_url(re.compile(r"/instances/[0-9a-f-]{36}$"))
    expect(page.locator("h1")).to_have_text("hourly-1")
    expect(page.locator("#instance-status .badge")).to_have_text("running")


def test_the_cost_preview_follows_the_last_choice_however_fast_they_come(
    page: Page, live_server: LiveServer, fake_offer: Offer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first preview answers slowly; the choices made meanwhile end on the last one, not
    on whichever request happened to be queued (htmx's default keeps the first queued)."""
    calls: list[str] = []
    original = instances_order.preview_of

    def slow_first(*args: Any) -> Any:
        calls.append(args[3])
        if len(calls) == 1:
            time.sleep(1.5)
        return original(*args)

    monkeypatch.setattr(instances_order, "preview_of", slow_first)
    user = make_customer(live_server, balance=Decimal("20"))
    sign_in(page, live_server, user)
    page.goto("/instances/new")
    calls.clear()  # the page's own render
    page.locator(f'input[name="product"][value="{fake_offer.plan}"]').check()  # slow
    page.locator('input[name="billing_cycle"][value="hourly"]').check()
    page.locator('input[name="billing_cycle"][value="monthly"]').check()
    preview = page.locator("#preview")
    expect(preview).to_contain_text("for the first month")
    time.sleep(2)  # the slow first answer has come back by now: it must not win
    expect(preview).to_contain_text("for the first month")
    expect(preview).not_to_contain_text("USD/h")


def test_a_double_submit_creates_one_instance(
    new_panel_context: PanelContexts, live_server: LiveServer, fake_offer: Offer
) -> None:
    user = make_customer(live_server, balance=Decimal("20"))
    context = new_panel_context(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, live_server, user)
    page.goto("/instances/new")
    page.locator(f'input[name="product"][value="{fake_offer.plan}"]').check()
    page.locator('input[name="name"]').fill("twice")
    fields = {
        name: page.locator(f'#order-form input[name="{name}"]').input_value()
        for name in ("csrftoken", "nonce", "name")
    }
    form = {
        **fields,
        "product": fake_offer.plan,
        "region": fake_offer.region,
        "image": fake_offer.image,
        "billing_cycle": "monthly",
        "intent": "create",
    }
    # The same form sent twice (a double click, a retried post): one instance.
    first = context.request.post("/instances/new", form=form, max_redirects=0)
    second = context.request.post("/instances/new", form=form, max_redirects=0)
    assert first.status == second.status == 303
    assert first.headers["location"] == second.headers["location"]
    with live_server.transaction() as db:
        mine = db.scalars(select(Instance).where(Instance.user_id == user.id)).all()
    assert [i.name for i in mine] == ["twice"]


def test_power_works_with_javascript_off(
    new_panel_context: PanelContexts, live_server: LiveServer, fake_offer: Offer
) -> None:
    user = make_customer(live_server, balance=Decimal("20"))
    instance_id = order_instance(live_server, user, fake_offer, "no-js")
    wait_status(live_server, instance_id, "running")
    page = new_panel_context(java_script_enabled=False).new_page()
    sign_in(page, live_server, user)
    page.get_by_role("button", name="Stop no-js").click()  # the list's quick power form
    expect(page).to_have_url(re.compile(r"/instances$"))
    expect(page.locator(".flash-ok")).to_contain_text("no-js: stop requested")
    wait_status(live_server, instance_id, "stopped")
