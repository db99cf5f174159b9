"""The staff pages of the fleet in a browser (PANEL.md pages 16 and 17): instances filtered by
node with statuses live, support seeing them without being able to act; an admin adding and
disabling a node; and a node whose real libvirt connection stops turning red live while
placement stops using it."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.helpers import (
    MARK,
    STILL_MARKED,
    Offer,
    add_fake_node,
    add_node,
    add_plan,
    make_customer,
    node_named,
    offer_on,
    only_node,
    order_instance,
    sign_in,
    wait_status,
)
from tests.web.browser.server import LiveServer
from vmcloud.accounts.models import User
from vmcloud.billing import flows
from vmcloud.compute import nodes, reconcile
from vmcloud.compute import service as compute
from vmcloud.compute.models import Instance
from vmcloud.compute.nodes import NoCapacityError
from vmcloud.compute.schemas import InstanceCreate

SYSTEM_LIBVIRT_SOCKET = "/var/run/libvirt/libvirt-sock"


def _act(live: LiveServer, instance_id: uuid.UUID, action: str) -> None:
    with live.transaction() as db:
        instance = db.get(Instance, instance_id, with_for_update=True)
        assert instance is not None
        compute.request_action(db=db, instance=instance, action=action)


@pytest.fixture
def other_fake_node(live_server: LiveServer, fake_offer: Offer) -> Iterator[Offer]:
    """A second in-memory node offering the shared plan, disabled at the end: left enabled, it
    would take later tests' orders, which look for their VMs on fake_offer's node."""
    other = offer_on(add_fake_node(live_server), fake_offer.plan)
    yield other
    with live_server.transaction() as db:
        db.merge(node_named(live_server, other.node_name)).status = "disabled"


def test_instances_filter_by_node_live_and_support_cannot_act(
    page: Page,
    live_server: LiveServer,
    fake_offer: Offer,
    other_fake_node: Offer,
    new_panel_context: PanelContexts,
) -> None:
    owner = make_customer(live_server, balance=Decimal("30"))
    other = other_fake_node
    with only_node(live_server, fake_offer.node_id):
        here = order_instance(live_server, owner, fake_offer, "infra-here")
    with only_node(live_server, other.node_id):
        there = order_instance(live_server, owner, other, "infra-there")
    wait_status(live_server, here, "running")
    wait_status(live_server, there, "running")

    sign_in(page, live_server, make_customer(live_server, role="admin"), landing="/instances")
    page.goto("/admin/instances")
    page.get_by_label("Node", exact=True).select_option(fake_offer.node_name)
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"node="))
    rows = page.locator("#admin-instance-list tbody tr")
    expect(rows.filter(has_text="infra-here")).to_have_count(1)
    expect(rows.filter(has_text="infra-there")).to_have_count(0)
    row = page.locator(f"#admin-instance-{here}")
    expect(row.locator(".badge")).to_have_text("running")
    page.evaluate(MARK)
    _act(live_server, here, "stop")  # someone else stops it: the row follows, no reload
    expect(row.locator(".badge")).to_have_text("stopped")
    row.get_by_role("button", name="Start infra-here").click()  # the admin's own action
    expect(page.locator(f"#admin-instance-{here} .badge")).to_have_text("running")

    support = new_panel_context().new_page()
    sign_in(support, live_server, make_customer(live_server, role="support"))
    support.goto(f"/admin/instances?node={other.node_name}")
    expect(support.locator(f"#admin-instance-{there}")).to_contain_text("infra-there")
    expect(support.get_by_role("button", name=re.compile("^(Start|Stop|Reboot) "))).to_have_count(0)
    expect(support.locator("summary", has_text="Delete")).to_have_count(0)
    token = support.locator('input[name="csrftoken"]').first.get_attribute("value")
    forged = support.request.post(
        f"/admin/instances/{there}/power", form={"action": "stop", "csrftoken": token or ""}
    )
    assert forged.status == 403
    wait_status(live_server, there, "running", timeout=1)


def test_an_admin_adds_and_disables_a_node(page: Page, live_server: LiveServer) -> None:
    sign_in(page, live_server, make_customer(live_server, role="admin"), landing="/instances")
    name = f"hv-{uuid.uuid4().hex[:8]}"
    page.goto("/admin/nodes")
    page.get_by_role("button", name="Add node").click()  # the page's link styled as a button
    page.get_by_label("Name").fill(name)
    page.get_by_label("Driver").select_option("fake")
    page.get_by_label("libvirt URI").fill("qemu:///system")  # not a fake driver's address
    page.get_by_label("Disk directory on the node").fill("/var/lib/vmcloud/disks")
    page.get_by_label("vCPUs").fill("16")
    page.get_by_label("RAM (MB)").fill("32768")
    page.get_by_label("Disk (GB)").fill("400")
    page.get_by_label("Status").select_option("disabled")
    page.get_by_role("button", name="Add node").click()
    expect(page.locator("#e-uri")).to_have_text("fake://<name>")  # the service's check
    page.get_by_label("libvirt URI").fill(f"fake://{name}")
    page.get_by_label("Status").select_option("enabled")
    page.get_by_role("button", name="Add node").click()

    expect(page).to_have_url(re.compile(r"/admin/nodes$"))
    expect(page.get_by_text(f"Node {name} added.")).to_be_visible()
    node = node_named(live_server, name)
    row = page.locator(f"#node-{node.id}")
    expect(row).to_contain_text("vCPU 0 / 64")  # 16 vCPUs, overcommitted 4 times by default
    row.get_by_role("button", name=f"Disable {name}").click()
    expect(page.get_by_text(f"Node {name} is disabled.")).to_be_visible()
    expect(page.locator(f"#node-{node.id} .badge-node-disabled")).to_have_text("disabled")
    assert node_named(live_server, name).status == "disabled"


class SocketRelay:
    """A unix socket of our own relaying to the machine's libvirt daemon, until :meth:`stop`
    closes it and every connection through it: to libvirt clients the daemon is gone."""

    def __init__(self, path: Path, target: str = SYSTEM_LIBVIRT_SOCKET) -> None:
        self.path, self.target = path, target
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(8)
        self._server.settimeout(0.2)
        self._open: list[socket.socket] = []
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            client.settimeout(None)
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopped.set()
        self._server.close()
        self.path.unlink(missing_ok=True)
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture
def relayed_node(live_server: LiveServer) -> Iterator[tuple[Offer, SocketRelay]]:
    """A libvirt node of the live server reaching the machine's real daemon through a
    :class:`SocketRelay` (``qemu+unix:///system?socket=…``); the only enabled node meanwhile."""
    home = Path(tempfile.mkdtemp(prefix="vmc-relay-", dir="/tmp"))
    home.chmod(0o755)
    relay = SocketRelay(home / "libvirt-sock")
    node = add_node(
        live_server,
        name=f"relayed-{uuid.uuid4().hex[:6]}",
        driver="libvirt",
        uri=f"qemu+unix:///system?socket={relay.path}",
        storage_dir=str(home / "disks"),
        vcpus=4,
        memory_mb=8192,
        disk_gb=100,
    )
    offer = offer_on(node, add_plan(live_server))
    try:
        with only_node(live_server, node.id):
            yield offer, relay
    finally:
        relay.stop()
        with live_server.transaction() as db:
            db.merge(node_named(live_server, node.name)).status = "disabled"
        shutil.rmtree(home, ignore_errors=True)


def _reconcile(live: LiveServer, node_name: str) -> None:
    """One reconcile pass over the node, as the minute's job runs it."""
    with live.transaction() as db:
        node = db.merge(node_named(live, node_name))
        reconcile.reconcile_node(db, node, stale_after=timedelta(minutes=10))


def test_a_node_whose_libvirt_connection_stops_turns_red_live_and_takes_no_orders(
    page: Page, live_server: LiveServer, relayed_node: tuple[Offer, SocketRelay]
) -> None:
    offer, relay = relayed_node
    _reconcile(live_server, offer.node_name)
    sign_in(page, live_server, make_customer(live_server, role="admin"), landing="/instances")
    page.goto("/admin/nodes")
    row = page.locator(f"#node-{offer.node_id}")
    expect(row).to_have_attribute("data-health", "up")
    expect(row.locator(".badge-health-up")).to_have_text("up")
    page.evaluate(MARK)

    relay.stop()  # the daemon stops answering this node's connection
    _reconcile(live_server, offer.node_name)

    expect(row).to_have_attribute("data-health", "down")
    expect(row).to_have_class(re.compile(r"\bnode-down\b"))
    expect(row.locator(".badge-health-down")).to_have_text("down")
    expect(row.locator(".node-error")).to_contain_text("hypervisor")
    expect(row).to_contain_text("since ")
    red = row.locator("td").first.evaluate("td => getComputedStyle(td).backgroundColor")
    assert red not in ("rgba(0, 0, 0, 0)", "transparent")
    assert page.evaluate(STILL_MARKED) == "yes"  # live, not reloaded

    customer = make_customer(live_server, balance=Decimal("30"))
    body = InstanceCreate(
        name="nowhere", product=offer.plan, region=offer.region, image=offer.image,
        billing_cycle="monthly",
    )  # fmt: skip
    with live_server.transaction() as db:
        owner = db.get(User, customer.id)
        assert owner is not None
        with pytest.raises(NoCapacityError):
            flows.order_instance(db=db, owner=owner, body=body)
        db.rollback()  # nothing of the refused order stays
    with live_server.transaction() as db:
        assert nodes.get_node(db=db, node_id=offer.node_id).allocated_vcpus == 0
