"""The instance pages through the real app: the list, one instance's page, ordering, power,
rename and delete as plain form posts (JavaScript off), and another user's ids as 404."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node, make_pool
from tests.helpers import JobRunner
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts.models import User
from vmcloud.compute.models import Instance
from vmcloud.web.customer import instances_views as views

NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@pytest.fixture(autouse=True)
def node(db: Session) -> None:
    make_node(db)
    make_pool(db, "198.18.9.0/28")


def _user(panel: TestClient, db: Session, **options: Any) -> User:
    user = make_user(db, **{"balance": "100.00", **options})
    log_in(panel, user.username, PASSWORD)
    return user


def _order(panel: TestClient, **fields: str) -> Any:
    page = panel.get("/instances/new").text
    nonce = NONCE.search(page)
    assert nonce
    data = {
        "csrftoken": csrf_of(page),
        "nonce": nonce.group(1),
        "name": "web-1",
        "product": "nano",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
        **fields,
    }
    return panel.post("/instances/new", data=data)


def _instances(db: Session, user: User) -> list[Instance]:
    return list(db.scalars(select(Instance).where(Instance.user_id == user.id)))


def _created(panel: TestClient, db: Session, user: User, **fields: str) -> Instance:
    answer = _order(panel, **fields)
    assert answer.status_code == 303, answer.text
    [instance] = _instances(db, user)
    assert answer.headers["location"] == f"/instances/{instance.id}"
    return instance


def _post(panel: TestClient, url: str, page: str, **data: str) -> Any:
    return panel.post(url, data={"csrftoken": csrf_of(panel.get(page).text), **data})


def test_an_empty_list_offers_the_first_vm(panel: TestClient, db: Session) -> None:
    _user(panel, db)
    page = panel.get("/instances")
    assert page.status_code == 200
    assert 'href="/instances/new"' in page.text and "Create your first VM" in page.text
    assert 'hx-sse:connect="/instances/stream"' in page.text
    assert "data-search" in page.text


def test_order_lands_on_the_instance_page_and_lists_it(
    panel: TestClient, db: Session, job_runner: JobRunner
) -> None:
    user = _user(panel, db)
    instance = _created(panel, db, user, name="web-1", hostname="web-1.example.com")
    assert instance.status == "pending" and instance.billing_cycle == "monthly"
    page = panel.get(f"/instances/{instance.id}")
    assert page.status_code == 200
    assert "badge-pending" in page.text and "198.18.9.2" in page.text
    assert f'hx-sse:connect="/instances/{instance.id}/stream"' in page.text
    assert f"/instances/{instance.id}/console" in page.text
    assert f"/instances/{instance.id}/graphs" in page.text
    assert "node-" not in page.text  # never the node
    job_runner.run("compute.")
    listing = panel.get("/instances").text
    assert f'id="instance-{instance.id}"' in listing
    assert "badge-running" in listing and "Nano" in listing and "4.00 USD/mo" in listing
    assert 'data-copy="198.18.9.2"' in listing


def test_a_double_submit_creates_one_instance(panel: TestClient, db: Session) -> None:
    user = _user(panel, db)
    page = panel.get("/instances/new").text
    nonce = NONCE.search(page)
    assert nonce
    data = {
        "csrftoken": csrf_of(page),
        "nonce": nonce.group(1),
        "name": "once",
        "product": "nano",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
    }
    first = panel.post("/instances/new", data=data)
    second = panel.post("/instances/new", data=data)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert len(_instances(db, user)) == 1


def test_insufficient_balance_shows_the_problem_on_the_form(panel: TestClient, db: Session) -> None:
    user = _user(panel, db, balance="1.00")
    answer = _order(panel, name="too-dear")
    assert answer.status_code == 402
    assert "flash-error" in answer.text and "balance" in answer.text.lower()
    assert 'value="too-dear"' in answer.text  # the form keeps what was typed
    assert _instances(db, user) == []


def test_unverified_cannot_order_and_can_ask_for_a_new_link(
    panel: TestClient, db: Session, job_runner: JobRunner
) -> None:
    user = _user(panel, db, email_verified=False)
    page = panel.get("/instances/new")
    assert 'id="confirm-email"' in page.text
    assert 'action="/verify-email/resend"' in page.text
    answer = _order(panel)
    assert answer.status_code == 403 and "Confirm your email" in answer.text
    assert _instances(db, user) == []
    resent = _post(panel, "/verify-email/resend", "/instances/new", next="/instances/new")
    assert resent.status_code == 303 and resent.headers["location"] == "/instances/new"
    assert job_runner.pending("accounts.send_verification_email")


def test_the_preview_is_right_without_javascript(panel: TestClient, db: Session) -> None:
    _user(panel, db, balance="10.00")
    page = panel.get("/instances/new").text
    assert "4.00 USD" in page and 'id="balance-after">6.00 USD' in page  # nano monthly
    hourly = _order(panel, intent="preview", billing_cycle="hourly", product="micro")
    assert hourly.status_code == 200
    assert "0.009 USD/h" in hourly.text and "at most 6.00 USD in a month" in hourly.text
    fragment = _post(
        panel, "/instances/new/preview", "/instances/new", product="small", billing_cycle="yearly"
    )
    assert fragment.status_code == 200 and fragment.text.startswith('<section id="preview"')
    assert "120.00 USD" in fragment.text and "does not cover this" in fragment.text


def test_power_as_a_plain_form_post(panel: TestClient, db: Session, job_runner: JobRunner) -> None:
    user = _user(panel, db)
    instance = _created(panel, db, user)
    job_runner.run("compute.")
    page = f"/instances/{instance.id}"
    stopped = _post(panel, f"{page}/power", page, action="stop")
    assert stopped.status_code == 303 and stopped.headers["location"] == page
    db.refresh(instance)
    assert instance.status == "stopping"
    job_runner.run("compute.")
    again = _post(panel, f"{page}/power", "/instances", action="stop", next="/instances")
    assert again.status_code == 409 and "cannot stop" in again.text
    started = _post(panel, f"{page}/power", "/instances", action="start", next="/instances")
    assert started.status_code == 303 and started.headers["location"] == "/instances"
    db.refresh(instance)
    assert instance.status == "starting"


def test_rename(panel: TestClient, db: Session) -> None:
    user = _user(panel, db)
    instance = _created(panel, db, user)
    page = f"/instances/{instance.id}"
    assert _post(panel, f"{page}/rename", page, name="db-1").status_code == 303
    db.refresh(instance)
    assert instance.name == "db-1"
    empty = _post(panel, f"{page}/rename", page, name="  ")
    assert empty.status_code == 422 and 'id="e-name"' in empty.text


def test_delete_needs_the_name_typed_and_shows_the_refund(
    panel: TestClient, db: Session, job_runner: JobRunner
) -> None:
    user = _user(panel, db)
    instance = _created(panel, db, user, name="web-9")
    job_runner.run("compute.")
    page = f"/instances/{instance.id}"
    assert "go back to your balance" in panel.get(page).text  # unused days of a paid month
    wrong = _post(panel, f"{page}/delete", page, confirm_name="web-")
    assert wrong.status_code == 422 and 'id="e-confirm_name"' in wrong.text
    db.refresh(instance)
    assert instance.status == "running"
    done = _post(panel, f"{page}/delete", page, confirm_name="web-9")
    assert done.status_code == 303 and done.headers["location"] == "/instances"
    db.refresh(instance)
    assert instance.status == "deleting"


def test_another_users_instance_is_404_on_every_route(
    panel: TestClient, db: Session, job_runner: JobRunner
) -> None:
    owner = _user(panel, db)
    instance = _created(panel, db, owner, name="mine")
    token = csrf_of(panel.get("/instances").text)
    panel.cookies.clear()
    _user(panel, db)
    token = csrf_of(panel.get("/instances").text)
    base = f"/instances/{instance.id}"
    assert panel.get(base).status_code == 404
    assert panel.get(f"{base}/stream").status_code == 404
    for path, data in (
        ("power", {"action": "start"}),
        ("rename", {"name": "theirs"}),
        ("delete", {"confirm_name": "mine"}),
    ):
        answer = panel.post(f"{base}/{path}", data={"csrftoken": token, **data})
        assert answer.status_code == 404, path
    assert "mine" not in panel.get("/instances").text
    db.refresh(instance)
    assert (instance.name, instance.status) == ("mine", "pending")
    assert panel.get(f"/instances/{uuid.uuid4()}").status_code == 404


def test_search_and_status_filter(panel: TestClient, db: Session, job_runner: JobRunner) -> None:
    user = _user(panel, db)
    _created(panel, db, user, name="alpha")
    job_runner.run("compute.")
    _order(panel, name="beta")
    assert db.scalar(select(func.count(Instance.id)).where(Instance.user_id == user.id)) == 2
    found = panel.get("/instances", params={"q": "alp"}).text
    assert ">alpha<" in found and ">beta<" not in found
    pending = panel.get("/instances", params={"status": "pending"}).text
    assert ">beta<" in pending and ">alpha<" not in pending
    assert 'hx-sse:connect="/instances/stream?status=pending"' in pending
    none = panel.get("/instances", params={"q": "%"}).text
    assert "No instance matches" in none
    assert panel.get("/instances", params={"status": "bogus"}).status_code == 422


def test_low_balance_banner_under_the_warning_line(panel: TestClient, db: Session) -> None:
    _user(panel, db, balance="3.00")  # the seeded billing.low_balance_warning is 5.00
    assert "Your balance is low: 3.00 USD" in panel.get("/instances").text
    panel.cookies.clear()
    _user(panel, db, balance="5.00")
    assert "Your balance is low" not in panel.get("/instances").text


def test_the_streams_fragments_replace_the_live_parts_by_id(
    panel: TestClient, db: Session, job_runner: JobRunner
) -> None:
    user = _user(panel, db)
    instance = _created(panel, db, user, name="live-1")
    listing = views.list_fragment(db, user, None, None, "tok")
    assert listing.startswith('<div id="instance-list" aria-live="polite" hx-swap-oob="true">')
    assert f'id="instance-{instance.id}"' in listing and 'value="tok"' in listing
    job_runner.run("compute.")
    db.expire_all()  # a stream renders each change in a session of its own
    detail = views.detail_fragment(db, user, instance.id, "tok")
    for part in ("status", "actions", "ip", "banner", "usage", "activity"):
        assert f'id="instance-{part}"' in detail, part
    assert detail.count('hx-swap-oob="true"') == 6
    assert "badge-running" in detail and "provisioning → running" in detail
    gone = views.detail_fragment(db, user, uuid.uuid4(), "tok")
    assert "badge-deleted" in gone and "has been deleted" in gone


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"ssh_keys": "not a key"}, "ssh_keys"),
        ({"hostname": "-bad-"}, "hostname"),
        ({"name": ""}, "name"),
        ({"product": "no-such-plan"}, "product"),
        ({"billing_cycle": "weekly"}, "billing_cycle"),
        ({"nonce": ""}, None),
    ],
)
def test_bad_order_input_is_a_4xx_on_the_form_and_creates_nothing(
    panel: TestClient, db: Session, fields: dict[str, str], field: str | None
) -> None:
    user = _user(panel, db)
    answer = _order(panel, **fields)
    assert 400 <= answer.status_code < 500, answer.text
    assert 'id="form-problem"' in answer.text
    if field:
        assert "field-error" in answer.text and f'name="{field}"' in answer.text
    assert _instances(db, user) == []
