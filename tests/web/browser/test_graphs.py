"""The graphs page in a browser (PANEL.md page 8): the charts draw the seeded samples, a
sample stored meanwhile is appended live in the same document, and the table is the page
when JavaScript is off."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from playwright.sync_api import Page, expect
from sqlalchemy import delete

from tests.factories.compute import add_sample
from tests.web.browser.conftest import PanelContexts
from tests.web.browser.guard import assert_no_horizontal_scroll
from tests.web.browser.helpers import (
    MARK,
    STILL_MARKED,
    Customer,
    Offer,
    make_customer,
    order_instance,
    sign_in,
    wait_status,
)
from tests.web.browser.server import LiveServer
from vmcloud.compute import metrics, nodes
from vmcloud.compute.models import Instance, InstanceMetric, Node
from vmcloud.core.clock import utcnow


def _running_with_samples(live: LiveServer, offer: Offer, count: int) -> tuple[uuid.UUID, Customer]:
    user = make_customer(live, balance=Decimal("30"))
    instance_id = order_instance(live, user, offer, "graphed")
    wait_status(live, instance_id, "running")
    with live.transaction() as db:
        # Only the seeded samples (provisioning took one), the newest 20 s old: the worker's
        # periodic sampling leaves an instance alone for a minute after its last sample.
        db.execute(delete(InstanceMetric).where(InstanceMetric.instance_id == instance_id))
        instance = db.get(Instance, instance_id)
        assert instance is not None
        newest = utcnow() - timedelta(seconds=20)
        for n in range(count):
            add_sample(db, instance, newest - timedelta(minutes=count - 1 - n), n * 60_000)
    return instance_id, user


def _sample_now(live: LiveServer, offer: Offer, instance_id: uuid.UUID) -> None:
    """One sample through the metrics job's own function, on the instance's node's driver."""
    with live.transaction() as db:
        instance = db.get(Instance, instance_id)
        assert instance is not None
        node = db.get(Node, instance.node_id)
        assert node is not None and node.name == offer.node_name, "placed on another node"
        assert metrics.sample(db, instance, nodes.driver_for(node))


def test_graphs_draw_the_seeded_samples_and_append_a_new_one_live(
    page: Page, live_server: LiveServer, fake_offer: Offer
) -> None:
    instance_id, user = _running_with_samples(live_server, fake_offer, 5)
    sign_in(page, live_server, user)
    page.goto(f"/instances/{instance_id}")
    page.get_by_role("link", name="Graphs").click()  # a boosted link: the scripts run after a swap
    graphs = page.locator("#graphs")
    expect(graphs).to_have_attribute("data-points", "5")
    expect(graphs.locator("canvas")).to_have_count(4)
    expect(page.locator("#metrics-rows tr")).to_have_count(5)
    page.evaluate(MARK)
    _sample_now(live_server, fake_offer, instance_id)
    expect(graphs).to_have_attribute("data-points", "6")
    expect(page.locator("#metrics-rows tr")).to_have_count(6)
    assert page.evaluate(STILL_MARKED) == "yes"
    assert_no_horizontal_scroll(page)
    # The guard (at teardown) fails the test on a CSP violation, uPlot's included.


def test_the_table_works_without_javascript(
    live_server: LiveServer, fake_offer: Offer, new_panel_context: PanelContexts
) -> None:
    instance_id, user = _running_with_samples(live_server, fake_offer, 3)
    page = new_panel_context(java_script_enabled=False).new_page()
    sign_in(page, live_server, user)
    page.goto(f"/instances/{instance_id}/graphs")
    table = page.get_by_role("table", name="Usage over the last 1 hour")
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(page.locator("#graphs")).to_be_hidden()
    page.get_by_role("link", name="24 hours").click()
    expect(page.get_by_role("table", name="Usage over the last 24 hours")).to_be_visible()
    assert_no_horizontal_scroll(page)
