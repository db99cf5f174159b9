"""The role matrix: every endpoint under ``/api/v1/admin`` called as anonymous, customer, support
and admin.

Anonymous callers get 401 and customers 403 everywhere; support reads users, plans and
instances (the staff GETs) and is refused everything else; admins succeed. The table is
checked against the app's own routes, so a new admin endpoint without a row here fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node, make_pool
from tests.factories.support import make_ticket
from tests.helpers import bearer, login
from vmcloud.audit.models import AuditLog
from vmcloud.billing import ledger
from vmcloud.catalog.models import Product

API = "/api/v1"
ROLES = ("anonymous", "customer", "support", "admin")
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}

NEW_PLAN = {
    "name": "Matrix plan",
    "slug": "matrix-plan",
    "specs_json": {"vcpus": 1, "memory_mb": 1024, "disk_gb": 20},
    "pricing_json": {"monthly": "5.00"},
}


NEW_NODE = {
    "name": "matrix-node",
    "region": "local",
    "uri": "qemu:///system",
    "storage_dir": "/var/lib/vmcloud/disks",
    "vcpus": 4,
    "memory_mb": 8192,
    "disk_gb": 100,
}

NEW_POOL = {"name": "matrix-pool", "region": "local", "cidr": "198.18.81.0/28"}


@dataclass(frozen=True)
class Case:
    staff_readable: bool  # support may call it too (the SPEC's "staff" rows)
    success: int  # what an admin gets
    body: dict[str, Any] | None = None


STAFF, ADMIN_ONLY = True, False

# Path parameters: {user_id} is a customer (with a balance), {ref} an unused plan, {key} a real
# setting, {transaction_id} a charge of that customer, {pool_id} an IP pool (198.18.80.0/28,
# .5 reserved).
MATRIX: dict[tuple[str, str], Case] = {
    ("GET", "/admin/users"): Case(STAFF, 200),
    ("GET", "/admin/users/{user_id}"): Case(STAFF, 200),
    ("PATCH", "/admin/users/{user_id}"): Case(ADMIN_ONLY, 200, {"status": "suspended"}),
    ("POST", "/admin/users/{user_id}/sessions/revoke"): Case(ADMIN_ONLY, 200),
    ("GET", "/admin/products"): Case(STAFF, 200),
    ("GET", "/admin/products/{ref}"): Case(STAFF, 200),
    ("POST", "/admin/products"): Case(ADMIN_ONLY, 201, NEW_PLAN),
    ("PATCH", "/admin/products/{ref}"): Case(ADMIN_ONLY, 200, {"name": "Renamed plan"}),
    ("DELETE", "/admin/products/{ref}"): Case(ADMIN_ONLY, 204),
    ("GET", "/admin/settings"): Case(ADMIN_ONLY, 200),
    ("PUT", "/admin/settings/{key}"): Case(ADMIN_ONLY, 200, {"value": "Matrix Cloud"}),
    ("GET", "/admin/audit-logs"): Case(ADMIN_ONLY, 200),
    ("GET", "/admin/instances"): Case(STAFF, 200),
    ("GET", "/admin/nodes"): Case(ADMIN_ONLY, 200),
    ("GET", "/admin/nodes/{node_id}"): Case(ADMIN_ONLY, 200),
    ("POST", "/admin/nodes"): Case(ADMIN_ONLY, 201, NEW_NODE),
    ("PATCH", "/admin/nodes/{node_id}"): Case(ADMIN_ONLY, 200, {"status": "maintenance"}),
    ("GET", "/admin/ip-pools"): Case(ADMIN_ONLY, 200),
    ("GET", "/admin/ip-pools/{pool_id}"): Case(ADMIN_ONLY, 200),
    ("POST", "/admin/ip-pools"): Case(ADMIN_ONLY, 201, NEW_POOL),
    ("PATCH", "/admin/ip-pools/{pool_id}"): Case(ADMIN_ONLY, 200, {"status": "disabled"}),
    ("POST", "/admin/ip-pools/{pool_id}/reserve"): Case(
        ADMIN_ONLY, 200, {"address": "198.18.80.9"}
    ),
    ("POST", "/admin/ip-pools/{pool_id}/unreserve"): Case(
        ADMIN_ONLY, 200, {"address": "198.18.80.5"}
    ),
    ("POST", "/admin/users/{user_id}/credits"): Case(
        ADMIN_ONLY, 201, {"amount": "5.00", "reason": "goodwill"}
    ),
    ("POST", "/admin/users/{user_id}/debits"): Case(
        ADMIN_ONLY, 201, {"amount": "1.00", "reason": "chargeback"}
    ),
    ("GET", "/admin/transactions"): Case(STAFF, 200),
    ("GET", "/admin/tickets"): Case(STAFF, 200),
    ("PATCH", "/admin/tickets/{ticket_id}"): Case(STAFF, 200, {"priority": "high"}),
    ("GET", "/admin/subscriptions"): Case(STAFF, 200),
    ("POST", "/admin/transactions/{transaction_id}/refund"): Case(
        ADMIN_ONLY, 201, {"reason": "goodwill"}
    ),
}


def expected_status(case: Case, role: str) -> int:
    if role == "anonymous":
        return 401
    if role == "customer":
        return 403
    if role == "support" and not case.staff_readable:
        return 403
    return case.success


def test_every_admin_route_has_a_matrix_row(app: FastAPI) -> None:
    # The OpenAPI document lists every route the app serves, however routers are nested.
    served = {
        (method.upper(), path.removeprefix(API))
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(f"{API}/admin")
        for method in operations
        if method.upper() in HTTP_METHODS
    }
    assert served == set(MATRIX), (
        f"missing rows: {sorted(served - set(MATRIX))}; stale rows: {sorted(set(MATRIX) - served)}"
    )


@pytest.fixture
def path_params(db: Session) -> dict[str, str]:
    customer = make_user(db, role="customer")
    plan = Product(
        name="Existing plan",
        slug="existing-plan",
        specs_json={"vcpus": 2, "memory_mb": 2048, "disk_gb": 40},
        pricing_json={"monthly": "10.00"},
        features_json=[],
    )
    db.add(plan)
    node = make_node(db)
    pool = make_pool(db, "198.18.80.0/28", reserved=["198.18.80.5"])
    db.flush()
    ticket = make_ticket(db, customer)
    ledger.post(db=db, user_id=customer.id, type_="credit", amount=Decimal(10), currency="USD")
    charge = ledger.post(
        db=db, user_id=customer.id, type_="charge", amount=Decimal(4), currency="USD"
    )
    return {
        "user_id": str(customer.id),
        "ref": str(plan.id),
        "key": "site.name",
        "node_id": str(node.id),
        "pool_id": str(pool.id),
        "transaction_id": str(charge.id),
        "ticket_id": str(ticket.id),
    }


def _audit_rows(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(AuditLog)) or 0


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_role_gets_the_right_status(
    client: TestClient,
    db: Session,
    path_params: dict[str, str],
    method: str,
    path: str,
    role: str,
) -> None:
    case = MATRIX[(method, path)]
    headers: dict[str, str] = {}
    if role != "anonymous":
        caller = make_user(db, role=role)
        headers = bearer(login(client, caller.username, PASSWORD))
    rows_before = _audit_rows(db)

    response = client.request(
        method, API + path.format(**path_params), json=case.body, headers=headers
    )

    want = expected_status(case, role)
    assert response.status_code == want, response.text
    if want in (401, 403):
        kind = "unauthorized" if want == 401 else "forbidden"
        assert response.json()["type"] == f"/problems/{kind}"
        # A refused call has no effect: nothing was written, so nothing was audited.
        assert _audit_rows(db) == rows_before
    elif method != "GET":
        assert _audit_rows(db) == rows_before + 1
