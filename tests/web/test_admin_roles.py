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

# Path parameters come from the ``objects`` fixture: {user_id} a customer with a balance,
# {ticket_id} their ticket, {node_id} a node, {transaction_id} a charge of the customer.
PAGES: dict[tuple[str, str], Row] = {
    ("GET", "/admin"): Row(STAFF),
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
    customer = make_user(db, role="customer")
    node = make_node(db)
    ticket = make_ticket(db, customer)
    ledger.post(db=db, user_id=customer.id, type_="credit", amount=Decimal(10), currency="USD")
    charge = ledger.post(
        db=db, user_id=customer.id, type_="charge", amount=Decimal(4), currency="USD"
    )
    return {
        "user_id": str(customer.id),
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
