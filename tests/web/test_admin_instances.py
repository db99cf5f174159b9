"""``/admin/instances``: every instance, filtered as the API's admin list is; admins act on them
(power, delete by name) through the API's services; support reads and cannot act."""

from __future__ import annotations

import itertools
import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts.models import User
from vmcloud.audit.models import AuditLog
from vmcloud.billing import flows
from vmcloud.compute import service as compute
from vmcloud.compute.models import Instance, Node
from vmcloud.compute.schemas import InstanceCreate

_pools = itertools.count(1)


def stopped_instance(db: Session, owner: User, name: str, *, status: str = "stopped") -> Instance:
    """An instance of ``owner`` ordered as the API orders it (on whichever enabled node has
    room), then in ``status``."""
    make_pool(db, f"198.19.{next(_pools) % 250}.0/24")
    plan = make_product(
        db,
        slug=f"admin-instances-{name}",
        specs_json={"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
        pricing_json={"hourly": "0.0074", "monthly": "4.00", "yearly": "40.00"},
    )
    body = InstanceCreate(
        name=name, product=plan.slug, region="local", image="tiny-linux", billing_cycle="monthly"
    )
    instance = flows.order_instance(db=db, owner=owner, body=body)
    compute.set_status(instance, status)
    db.flush()
    return instance


def _on_node(db: Session, owner: User, name: str, node: Node) -> Instance:
    """An instance placed on ``node``: every other node is disabled while it is ordered."""
    others = list(db.scalars(select(Node).where(Node.id != node.id, Node.status == "enabled")))
    for other in others:
        other.status = "disabled"
    db.flush()
    instance = stopped_instance(db, owner, name)
    for other in others:
        other.status = "enabled"
    db.flush()
    assert instance.node_id == node.id
    return instance


def _as(panel: TestClient, db: Session, role: str) -> str:
    user = make_user(db, role=role)
    log_in(panel, user.username, PASSWORD)
    return csrf_of(panel.get("/account").text)


def _names(html: str) -> set[str]:
    return set(re.findall(r'<a href="/instances/[0-9a-f-]+">([^<]+)</a>', html))


def test_support_filters_by_node_and_sees_no_buttons(panel: TestClient, db: Session) -> None:
    owner = make_user(db, balance="50.00")
    first, second = make_node(db, memory_mb=65536), make_node(db, memory_mb=65536)
    _on_node(db, owner, "on-first", first)
    _on_node(db, owner, "on-second", second)
    _as(panel, db, "support")

    everything = panel.get("/admin/instances")
    assert everything.status_code == 200
    assert {"on-first", "on-second"} <= _names(everything.text)
    assert f">{owner.username}</a>" in everything.text  # the owner, linked

    only_first = panel.get("/admin/instances", params={"node": first.name})
    assert _names(only_first.text) == {"on-first"}
    by_owner = panel.get("/admin/instances", params={"user": owner.email, "status": "stopped"})
    assert _names(by_owner.text) == {"on-first", "on-second"}

    for html in (everything.text, only_first.text):
        assert "/power" not in html and "/delete" not in html  # support: no action forms
        assert f'href="/admin/nodes/{first.id}"' not in html  # nor links to admin-only pages


def test_support_cannot_act_even_by_a_forged_post(panel: TestClient, db: Session) -> None:
    owner = make_user(db, balance="50.00")
    make_node(db)
    instance = stopped_instance(db, owner, "not-yours")
    token = _as(panel, db, "support")
    audit_before = db.scalar(select(AuditLog.id).order_by(AuditLog.id.desc()).limit(1))

    for path, form in (("power", {"action": "start"}), ("delete", {"confirm_name": "not-yours"})):
        answer = panel.post(
            f"/admin/instances/{instance.id}/{path}", data={**form, "csrftoken": token}
        )
        assert answer.status_code == 403

    db.refresh(instance)
    assert instance.status == "stopped"
    assert db.scalar(select(AuditLog.id).order_by(AuditLog.id.desc()).limit(1)) == audit_before


def test_admin_starts_and_deletes_by_typing_the_name(panel: TestClient, db: Session) -> None:
    owner = make_user(db, balance="50.00")
    make_node(db)
    instance = stopped_instance(db, owner, "theirs")
    token = _as(panel, db, "admin")
    listed = panel.get("/admin/instances", params={"status": "stopped"})
    assert f'action="/admin/instances/{instance.id}/power"' in listed.text

    started = panel.post(
        f"/admin/instances/{instance.id}/power",
        data={"action": "start", "next": "/admin/instances?status=stopped", "csrftoken": token},
    )
    assert started.status_code == 303
    assert started.headers["location"] == "/admin/instances?status=stopped"
    db.refresh(instance)
    assert instance.status == "starting"
    actions = db.scalars(select(AuditLog.action).where(AuditLog.entity_id == instance.id)).all()
    assert "instance.start" in actions

    again = panel.post(
        f"/admin/instances/{instance.id}/power", data={"action": "start", "csrftoken": token}
    )
    assert again.status_code == 409  # the page says why; nothing changes
    assert "cannot start" in again.text

    compute.set_status(instance, "running")
    db.flush()
    wrong = panel.post(
        f"/admin/instances/{instance.id}/delete",
        data={"confirm_name": "Theirs", "csrftoken": token},
    )
    assert wrong.status_code == 422
    db.refresh(instance)
    assert instance.status == "running"

    deleted = panel.post(
        f"/admin/instances/{instance.id}/delete",
        data={"confirm_name": "theirs", "next": "//evil.example", "csrftoken": token},
    )
    assert deleted.status_code == 303
    assert deleted.headers["location"] == "/admin/instances"
    db.refresh(instance)
    assert instance.status == "deleting"


def test_bad_filters_are_answered_not_crashed(panel: TestClient, db: Session) -> None:
    _as(panel, db, "support")
    assert panel.get("/admin/instances", params={"status": "melted"}).status_code == 422
    assert panel.get("/admin/instances", params={"cursor": "not-a-cursor"}).status_code == 422
    nobody = panel.get("/admin/instances", params={"user": "nobody@example.com"})
    assert nobody.status_code == 200
    assert "no such user" in nobody.text
    assert panel.get("/admin/instances", params={"node": "x" * 400}).status_code == 422
    assert panel.get("/admin/instances", params={"node": "no-such-node"}).status_code == 200
