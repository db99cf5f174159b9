"""SSH keys and API tokens in Chromium (PANEL.md page 12): a key saved in the panel is ticked
in the order form and reaches the new VM's NoCloud seed; a token shown once works against the
API within its scopes and stops working when revoked in the panel."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from decimal import Decimal

import httpx
import pycdlib
from playwright.sync_api import Page, expect

from tests.factories.accounts import new_public_key
from tests.web.browser.helpers import Offer, make_customer, node_named, sign_in
from tests.web.browser.server import LiveServer
from vmcloud.compute import cloud_init, nodes
from vmcloud.compute.drivers.base import VMSpec
from vmcloud.compute.drivers.fake import FakeDriver


def _spec_of(live: LiveServer, offer: Offer, instance_id: uuid.UUID) -> VMSpec:
    """What the fake hypervisor was asked to build (the worker provisions in the background)."""
    driver = nodes.driver_for(node_named(live, offer.node_name))
    assert isinstance(driver, FakeDriver)
    deadline = time.monotonic() + 15
    while instance_id not in driver.vms:
        assert time.monotonic() < deadline, "the instance was never provisioned"
        time.sleep(0.1)
    return driver.vms[instance_id].spec


def _seed_file(iso: bytes, name: str) -> str:
    reader = pycdlib.PyCdlib()
    reader.open_fp(io.BytesIO(iso))
    out = io.BytesIO()
    reader.get_file_from_iso_fp(out, joliet_path=f"/{name}")
    reader.close()
    return out.getvalue().decode()


def test_a_key_saved_in_the_panel_reaches_a_new_vms_seed(
    page: Page, live_server: LiveServer, fake_offer: Offer
) -> None:
    user = make_customer(live_server, balance=Decimal("30"))
    key = new_public_key() + " me@laptop"
    sign_in(page, live_server, user)
    page.goto("/account/ssh-keys")
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Public key").fill(key)
    page.get_by_role("button", name="Save key").click()
    expect(page.get_by_role("status")).to_contain_text("The key 'laptop' is saved.")
    expect(page.locator("#ssh-keys code.fingerprint")).to_have_text(re.compile(r"^SHA256:"))

    page.goto("/instances/new")
    page.locator(f'input[name="product"][value="{fake_offer.plan}"]').check()
    saved = page.get_by_role("checkbox", name=re.compile("laptop"))
    expect(saved).to_be_checked()
    page.locator('input[name="name"]').fill("keyed")
    page.get_by_role("button", name="Create instance").click()
    expect(page).to_have_url(re.compile(r"/instances/[0-9a-f-]{36}$"))

    spec = _spec_of(live_server, fake_offer, uuid.UUID(page.url.rsplit("/", 1)[1]))
    assert spec.ssh_keys == (key,)
    # The seed a real hypervisor gets from that spec carries it, in both of its files.
    iso = cloud_init.seed_iso(
        instance_id=spec.instance_id, hostname=spec.hostname, ssh_keys=spec.ssh_keys
    )
    assert json.loads(_seed_file(iso, "meta-data"))["public-keys"] == [key]
    user_data = _seed_file(iso, "user-data")
    assert json.loads(user_data.removeprefix("#cloud-config\n"))["ssh_authorized_keys"] == [key]


def test_a_token_shown_once_works_within_its_scope_until_revoked(
    page: Page, live_server: LiveServer
) -> None:
    user = make_customer(live_server)
    sign_in(page, live_server, user)
    page.goto("/account/tokens")
    page.get_by_label("Name").fill("ci-script")
    page.get_by_role("radiogroup", name="Account").get_by_label("read").check()
    page.get_by_role("button", name="Make token").click()
    secret_box = page.locator("#new-token-secret")
    expect(secret_box).to_have_text(re.compile(r"^vmc_pat_"))
    secret = secret_box.inner_text()
    expect(page.get_by_role("button", name="Copy token")).to_be_visible()

    api = httpx.Client(base_url=live_server.url + "/api/v1", timeout=10)
    headers = {"Authorization": f"Bearer {secret}"}
    me = api.get("/me", headers=headers)
    assert me.status_code == 200 and me.json()["username"] == user.username
    write = api.patch("/me", json={"first_name": "Mallory"}, headers=headers)
    assert write.status_code == 403 and write.json()["type"].endswith("insufficient-scope")

    page.get_by_role("button", name="Done").click()
    row = page.locator("#api-tokens tr", has_text="ci-script")
    expect(row).to_contain_text("account: read")
    expect(page.locator("main")).not_to_contain_text(secret)
    row.locator("summary", has_text="Revoke").click()
    row.get_by_label("Type ci-script to confirm").fill("ci-script")
    row.get_by_role("button", name="Revoke ci-script").click()
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    assert api.get("/me", headers=headers).status_code == 401
    api.close()
