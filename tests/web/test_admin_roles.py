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
from tests.factories.compute import make_node
from tests.factories.support import make_ticket
from tests.web.conftest import csrf_of, log_in
from tests.web.test_admin_instances import stopped_instance
from tests.web.test_foreign_ids import _walk
from vmcloud.audit.models import AuditLog
from vmcloud.billing import ledger

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
# {instance_id} their stopped instance (named role-matrix).
PAGES: dict[tuple[str, str], Row] = {
    ("GET", "/admin"): Row(STAFF),
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
def objects(db: Session) -> dict[str, str]:
    customer = make_user(db, role="customer", balance="50.00")
    node = make_node(db)
    instance = stopped_instance(db, customer, "role-matrix")
    ticket = make_ticket(db, customer)
    ledger.post(db=db, user_id=customer.id, type_="credit", amount=Decimal(10), currency="USD")
    charge = ledger.post(
        db=db, user_id=customer.id, type_="charge", amount=Decimal(4), currency="USD"
    )
    return {
        "user_id": str(customer.id),
        "instance_id": str(instance.id),
        "node_id": str(node.id),
        "ticket_id": str(ticket.id),
        "transaction_id": str(charge.id),
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
