"""The staff panel's role matrix: every ``/admin`` page route, as anonymous, customer, support
and admin, like ``tests/test_role_matrix.py`` does for the API.

Anonymous visitors are sent to the login page; customers get 403 everywhere; support opens the
staff pages and is refused the admin-only pages and actions (403, and nothing changes: no audit
row); admins succeed. The table is checked against the app's own routes, so a new staff route
without a row here fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from tests.factories.support import make_ticket
from tests.web.conftest import csrf_of, log_in
from tests.web.test_admin_instances import stopped_instance
from tests.web.test_foreign_ids import _walk
from vmcloud.audit.models import AuditLog
from vmcloud.billing import ledger
from vmcloud.config import Settings
from vmcloud.support import service as support
from vmcloud.support.attachments import Upload
from vmcloud.support.schemas import MessageCreate
from vmcloud.support.storage import storage_for

ROLES = ("anonymous", "customer", "support", "admin")


@dataclass(frozen=True)
class Row:
    staff_readable: bool  # support may use it too
    success: int | None = 200  # what an admin gets (None: a stream, only refusals checked)
    form: dict[str, str] = field(default_factory=dict)


STAFF, ADMIN_ONLY = True, False

NODE_EDIT = {
    "vcpus": "16",
    "memory_mb": "32768",
    "disk_gb": "800",
    "cpu_overcommit": "4",
    "ram_overcommit": "1",
    "disk_overcommit": "1",
    "status": "enabled",
}
NEW_NODE = {
    **NODE_EDIT,
    "name": "role-matrix-node",
    "region": "local",
    "uri": "qemu+ssh://root@hv-9/system",
    "driver": "libvirt",
    "storage_dir": "/var/lib/vmcloud/disks",
    "network_mode": "user",
    "virt_type": "kvm",
    "nonce": "role-matrix-nonce",
}

# Path parameters come from the ``objects`` fixture: {user_id} a customer with a balance,
# {ticket_id} their ticket, {node_id} a node, {transaction_id} a charge of the customer,
# {attachment_id} a file of the ticket's thread, {pool_id} an IP pool (198.18.90.0/28, .5
# reserved), {key} a setting, {product_id} a plan named "Matrix plan", {instance_id} the
# customer's stopped instance (named role-matrix).
PLAN_FORM = {
    "name": "Matrix plan",
    "vcpus": "1",
    "memory_mb": "512",
    "disk_gb": "10",
    "price_monthly": "4.00",
    "status": "active",
}
PAGES: dict[tuple[str, str], Row] = {
    ("GET", "/admin"): Row(STAFF),
    ("GET", "/admin/stream"): Row(STAFF, None),
    ("GET", "/admin/tickets"): Row(STAFF),
    ("GET", "/admin/tickets/stream"): Row(STAFF, None),
    ("GET", "/admin/tickets/{ticket_id}"): Row(STAFF),
    ("GET", "/admin/tickets/{ticket_id}/stream"): Row(STAFF, None),
    ("GET", "/admin/tickets/{ticket_id}/attachments/{attachment_id}"): Row(STAFF),
    ("POST", "/admin/tickets/{ticket_id}/update"): Row(STAFF, 303, {"priority": "high"}),
    ("POST", "/admin/tickets/{ticket_id}/messages"): Row(
        STAFF, 303, {"message": "On it.", "kind": "reply", "nonce": "n0nce"}
    ),
    ("GET", "/admin/ip-pools"): Row(ADMIN_ONLY),
    ("GET", "/admin/ip-pools/stream"): Row(ADMIN_ONLY, None),
    ("POST", "/admin/ip-pools"): Row(
        ADMIN_ONLY,
        303,
        {"name": "roles-pool", "region": "local", "cidr": "198.18.91.0/28", "nonce": "roles-1"},
    ),
    ("GET", "/admin/ip-pools/{pool_id}"): Row(ADMIN_ONLY),
    ("GET", "/admin/ip-pools/{pool_id}/stream"): Row(ADMIN_ONLY, None),
    ("POST", "/admin/ip-pools/{pool_id}/reserve"): Row(ADMIN_ONLY, 303, {"address": "198.18.90.9"}),
    ("POST", "/admin/ip-pools/{pool_id}/unreserve"): Row(
        ADMIN_ONLY, 303, {"address": "198.18.90.5"}
    ),
    ("POST", "/admin/ip-pools/{pool_id}/status"): Row(ADMIN_ONLY, 303, {"status": "disabled"}),
    ("POST", "/admin/ip-pools/{pool_id}/gateway"): Row(
        ADMIN_ONLY, 303, {"gateway": "198.18.90.14"}
    ),
    ("GET", "/admin/settings"): Row(ADMIN_ONLY),
    ("POST", "/admin/settings/{key}"): Row(ADMIN_ONLY, 303, {"value": "Matrix Cloud"}),
    ("GET", "/admin/products"): Row(STAFF),
    ("GET", "/admin/products/new"): Row(ADMIN_ONLY),
    ("POST", "/admin/products/new"): Row(
        ADMIN_ONLY, 303, {**PLAN_FORM, "slug": "matrix-new", "nonce": "matrix"}
    ),
    ("GET", "/admin/products/{product_id}"): Row(STAFF),
    ("POST", "/admin/products/{product_id}"): Row(
        ADMIN_ONLY, 303, {**PLAN_FORM, "slug": "matrix-edited"}
    ),
    ("POST", "/admin/products/{product_id}/move"): Row(ADMIN_ONLY, 303, {"direction": "up"}),
    ("POST", "/admin/products/{product_id}/archive"): Row(
        ADMIN_ONLY, 303, {"confirm_name": "Matrix plan"}
    ),
    ("GET", "/admin/transactions"): Row(STAFF),
    ("GET", "/admin/transactions/stream"): Row(STAFF, None),
    ("GET", "/admin/transactions.csv"): Row(STAFF),
    ("GET", "/admin/transactions/{transaction_id}"): Row(STAFF),
    ("POST", "/admin/transactions/{transaction_id}/refund"): Row(
        ADMIN_ONLY, 303, {"amount": "1.00", "reason": "goodwill", "nonce": "roles-refund"}
    ),
    ("GET", "/admin/audit"): Row(ADMIN_ONLY),
    ("GET", "/admin/audit/stream"): Row(ADMIN_ONLY, None),
    ("GET", "/admin/audit.csv"): Row(ADMIN_ONLY),
    ("GET", "/admin/users"): Row(STAFF),
    ("GET", "/admin/users/{user_id}"): Row(STAFF),
    ("GET", "/admin/users/{user_id}/stream"): Row(STAFF, None),
    ("POST", "/admin/users/{user_id}/account"): Row(
        ADMIN_ONLY, 303, {"role": "customer", "status": "suspended"}
    ),
    ("POST", "/admin/users/{user_id}/credit"): Row(
        ADMIN_ONLY, 303, {"amount": "5.00", "reason": "goodwill", "nonce": "role-matrix"}
    ),
    ("POST", "/admin/users/{user_id}/sessions/revoke"): Row(ADMIN_ONLY, 303),
    ("GET", "/admin/subscriptions"): Row(STAFF),
    ("GET", "/admin/subscriptions/stream"): Row(STAFF, None),
    ("GET", "/admin/instances"): Row(STAFF),
    ("GET", "/admin/instances/stream"): Row(STAFF, None),
    ("POST", "/admin/instances/{instance_id}/power"): Row(ADMIN_ONLY, 303, {"action": "start"}),
    ("POST", "/admin/instances/{instance_id}/delete"): Row(
        ADMIN_ONLY, 303, {"confirm_name": "role-matrix"}
    ),
    ("GET", "/admin/nodes"): Row(ADMIN_ONLY),
    ("GET", "/admin/nodes/stream"): Row(ADMIN_ONLY, None),
    ("GET", "/admin/nodes/new"): Row(ADMIN_ONLY),
    ("POST", "/admin/nodes/new"): Row(ADMIN_ONLY, 303, NEW_NODE),
    ("GET", "/admin/nodes/{node_id}"): Row(ADMIN_ONLY),
    ("POST", "/admin/nodes/{node_id}"): Row(ADMIN_ONLY, 303, NODE_EDIT),
    ("POST", "/admin/nodes/{node_id}/status"): Row(ADMIN_ONLY, 303, {"status": "maintenance"}),
}


def test_every_staff_route_has_a_row(app: FastAPI) -> None:
    served = {
        (method, path)
        for method, path in _walk(app.router)
        if path.startswith("/admin") and method != "HEAD"
    }
    assert served == set(PAGES), (
        f"missing rows: {sorted(served - set(PAGES))}; stale rows: {sorted(set(PAGES) - served)}"
    )


@pytest.fixture
def objects(db: Session, app_settings: Settings) -> dict[str, str]:
    customer = make_user(db, role="customer", balance="50.00")
    node = make_node(db)
    pool = make_pool(db, "198.18.90.0/28", reserved=["198.18.90.5"])
    instance = stopped_instance(db, customer, "role-matrix")
    ticket = make_ticket(db, customer)
    upload = Upload(name="log.txt", content_type="text/plain", data=b"boot log")
    message = support.add_message(
        db=db,
        ticket=ticket,
        author=customer,
        body=MessageCreate(message="The log."),
        uploads=[upload],
        storage=storage_for(app_settings),
    )
    ledger.post(db=db, user_id=customer.id, type_="credit", amount=Decimal(10), currency="USD")
    charge = ledger.post(
        db=db, user_id=customer.id, type_="charge", amount=Decimal(4), currency="USD"
    )
    plan = make_product(db, name="Matrix plan")
    return {
        "user_id": str(customer.id),
        "instance_id": str(instance.id),
        "node_id": str(node.id),
        "ticket_id": str(ticket.id),
        "transaction_id": str(charge.id),
        "attachment_id": str((message.attachments_json or [{}])[0]["id"]),
        "pool_id": str(pool.id),
        "key": "site.name",
        "product_id": str(plan.id),
    }


def _audit_rows(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(AuditLog)) or 0


def expected(row: Row, role: str) -> int | None:
    if role == "anonymous":
        return 303
    if role == "customer" or (role == "support" and not row.staff_readable):
        return 403
    return row.success


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), list(PAGES), ids=[f"{m} {p}" for m, p in PAGES])
def test_role_gets_the_right_answer(
    panel: TestClient,
    db: Session,
    objects: dict[str, str],
    method: str,
    path: str,
    role: str,
) -> None:
    row = PAGES[(method, path)]
    want = expected(row, role)
    if want is None:
        return  # an admin's stream: opened by the page tests, not here
    if role != "anonymous":
        caller = make_user(db, role=role)
        log_in(panel, caller.username, PASSWORD)
    url = path.format(**objects)
    rows_before = _audit_rows(db)

    if method == "GET":
        response = panel.get(url, headers={"accept": "text/html"})
    else:
        token = csrf_of(panel.get("/login" if role == "anonymous" else "/account").text)
        response = panel.post(url, data={**row.form, "csrftoken": token})

    assert response.status_code == want, response.text[:2000]
    if want == 303 and role == "anonymous":
        assert response.headers["location"].startswith("/login")
    if want == 403:
        assert "This needs" in response.text  # the API's own refusal, as a page
    if role == "anonymous" or want == 403:
        assert _audit_rows(db) == rows_before  # refused: nothing changed
