"""The staff pages of users (``/admin/users``, ``/admin/users/{id}``) through the real app:
the API's search and services behind them, admin-only actions refused to support, credits
validated and made once per form, and "log out all sessions" ending the user's panel session
and API tokens."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, fund, make_user
from tests.factories.support import make_ticket
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts import api_tokens
from vmcloud.accounts.models import User
from vmcloud.audit.models import AuditLog
from vmcloud.billing.models import Transaction
from vmcloud.web.admin import users as users_page

NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@pytest.fixture
def second_browser(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(
        app,
        base_url="https://testserver",
        raise_server_exceptions=False,
        client=("198.51.100.10", 50000),
        follow_redirects=False,
    ) as client:
        yield client


def _as(panel: TestClient, db: Session, role: str) -> User:
    staff = make_user(db, role=role)
    log_in(panel, staff.username, PASSWORD)
    return staff


def _credits(db: Session, user: User) -> list[Transaction]:
    stmt = select(Transaction).where(Transaction.user_id == user.id, Transaction.type == "credit")
    return list(db.scalars(stmt))


def test_search_role_and_status_filters(panel: TestClient, db: Session) -> None:
    _as(panel, db, "support")
    make_user(db, email="findme@example.com", username="findme")
    make_user(db, email="other@example.com", username="other", status="suspended")
    found = panel.get("/admin/users?q=FINDME").text
    assert "findme@example.com" in found and "other@example.com" not in found
    suspended = panel.get("/admin/users?status=suspended").text
    assert "other@example.com" in suspended and "findme@example.com" not in suspended
    assert "findme@example.com" not in panel.get("/admin/users?role=admin").text
    # Filters that are not choices, and a bad cursor, are refusals, never a 500.
    assert panel.get("/admin/users?role=root", headers={"accept": "text/html"}).status_code == 422
    assert panel.get("/admin/users?cursor=zzz", headers={"accept": "text/html"}).status_code == 422


def test_support_sees_the_user_but_no_actions(panel: TestClient, db: Session) -> None:
    _as(panel, db, "support")
    customer = make_user(db, email="seen@example.com")
    fund(db, customer, "12.50")
    make_ticket(db, customer, subject="My VM is slow")
    page = panel.get(f"/admin/users/{customer.id}")
    assert page.status_code == 200
    assert "seen@example.com" in page.text and "12.50 USD" in page.text
    assert "My VM is slow" in page.text and "test funding" in page.text
    for action in ("/credit", "/account", "/sessions/revoke"):
        assert f"/admin/users/{customer.id}{action}" not in page.text
    assert 'id="user-audit"' not in page.text  # the audit trail is for admins
    # A forged post is refused by the route, and changes nothing.
    token = csrf_of(page.text)
    forged = panel.post(
        f"/admin/users/{customer.id}/account",
        data={"role": "admin", "status": "active", "csrftoken": token},
    )
    assert forged.status_code == 403
    db.refresh(customer)
    assert customer.role == "customer"


def test_unknown_user_is_404(panel: TestClient, db: Session) -> None:
    _as(panel, db, "admin")
    missing = "00000000-0000-4000-8000-000000000000"
    assert panel.get(f"/admin/users/{missing}").status_code == 404
    assert panel.get(f"/admin/users/{missing}/stream").status_code == 404
    token = csrf_of(panel.get("/account").text)
    for action, data in (
        ("credit", {"amount": "5.00", "reason": "x", "nonce": "n-404"}),
        ("account", {"role": "support"}),
        ("sessions/revoke", {}),
    ):
        answer = panel.post(f"/admin/users/{missing}/{action}", data={**data, "csrftoken": token})
        assert answer.status_code == 404, action


def test_admin_credits_once_per_form(panel: TestClient, db: Session) -> None:
    admin = _as(panel, db, "admin")
    customer = make_user(db)
    page = panel.get(f"/admin/users/{customer.id}").text
    form = {"amount": "5.00", "reason": "goodwill", "nonce": NONCE.findall(page)[0]}
    form["csrftoken"] = csrf_of(page)
    first = panel.post(f"/admin/users/{customer.id}/credit", data=form)
    again = panel.post(f"/admin/users/{customer.id}/credit", data=form)
    assert (first.status_code, again.status_code) == (303, 303)
    db.refresh(customer)
    assert customer.balance == Decimal("5.00")
    [entry] = _credits(db, customer)
    assert entry.metadata_json == {"reason": "goodwill", "by": str(admin.id)}
    audited = select(func.count()).where(
        AuditLog.action == "transaction.credit", AuditLog.entity_id == entry.id
    )
    assert db.scalar(audited) == 1
    shown = panel.get(f"/admin/users/{customer.id}").text
    assert "5.00 USD" in shown and "goodwill" in shown


@pytest.mark.parametrize(
    ("amount", "reason", "field"),
    [
        ("0", "goodwill", "amount"),
        ("0.00", "goodwill", "amount"),
        ("-5", "goodwill", "amount"),
        ("1.234", "goodwill", "amount"),
        ("abc", "goodwill", "amount"),
        ("1e3", "goodwill", "amount"),
        ("100000000", "goodwill", "amount"),
        ("", "goodwill", "amount"),
        ("5.00", "", "reason"),
        ("5.00", "x" * 501, "reason"),
    ],
)
def test_bad_credits_are_refused_next_to_the_field(
    panel: TestClient, db: Session, amount: str, reason: str, field: str
) -> None:
    _as(panel, db, "admin")
    customer = make_user(db)
    page = panel.get(f"/admin/users/{customer.id}").text
    answer = panel.post(
        f"/admin/users/{customer.id}/credit",
        data={"amount": amount, "reason": reason, "nonce": "n1", "csrftoken": csrf_of(page)},
    )
    assert answer.status_code == 422, answer.text[:500]
    assert f'id="e-{field}"' in answer.text
    assert _credits(db, customer) == []


def test_a_credit_past_the_largest_balance_is_409(panel: TestClient, db: Session) -> None:
    _as(panel, db, "admin")
    customer = make_user(db, balance="99999999.00")
    page = panel.get(f"/admin/users/{customer.id}").text
    answer = panel.post(
        f"/admin/users/{customer.id}/credit",
        data={"amount": "5.00", "reason": "x", "nonce": "n2", "csrftoken": csrf_of(page)},
    )
    assert answer.status_code == 409
    assert "cannot exceed" in answer.text
    assert len(_credits(db, customer)) == 1  # the factory's funding alone


def test_admin_changes_role_and_status(panel: TestClient, db: Session) -> None:
    admin = _as(panel, db, "admin")
    customer = make_user(db)
    url = f"/admin/users/{customer.id}"
    token = csrf_of(panel.get(url).text)
    promoted = panel.post(
        f"{url}/account", data={"role": "support", "status": "active", "csrftoken": token}
    )
    assert promoted.status_code == 303
    db.refresh(customer)
    assert customer.role == "support"
    bad = panel.post(f"{url}/account", data={"role": "root", "csrftoken": token})
    assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text
    # The last active admin cannot demote themselves: the service's 409, on the page.
    self_url = f"/admin/users/{admin.id}/account"
    last = panel.post(self_url, data={"role": "customer", "status": "active", "csrftoken": token})
    assert last.status_code == 409 and "last active admin" in last.text
    db.refresh(admin)
    assert admin.role == "admin"


def test_logging_a_user_out_everywhere(
    panel: TestClient, second_browser: TestClient, db: Session
) -> None:
    customer = make_user(db)
    log_in(second_browser, customer.username, PASSWORD)
    assert second_browser.get("/account").status_code == 200
    _, secret = api_tokens.create_token(
        db=db, user=customer, name="script", scopes=["instances:read"], expires_at=None
    )
    bearer = {"Authorization": f"Bearer {secret}"}
    assert second_browser.get("/api/v1/instances", headers=bearer).status_code == 200
    _as(panel, db, "admin")
    token = csrf_of(panel.get(f"/admin/users/{customer.id}").text)

    answer = panel.post(f"/admin/users/{customer.id}/sessions/revoke", data={"csrftoken": token})

    assert answer.status_code == 303
    ended = second_browser.get("/account")
    assert ended.status_code == 303 and ended.headers["location"].startswith("/login")
    assert second_browser.get("/api/v1/instances", headers=bearer).status_code == 401
    revoked = select(func.count()).where(
        AuditLog.action == "user.sessions_revoke", AuditLog.entity_id == customer.id
    )
    assert db.scalar(revoked) == 1


def test_admins_see_the_audit_trail(
    panel: TestClient, second_browser: TestClient, db: Session
) -> None:
    customer = make_user(db)
    log_in(second_browser, customer.username, PASSWORD)
    _as(panel, db, "admin")
    page = panel.get(f"/admin/users/{customer.id}").text
    assert 'id="user-audit"' in page and "user.login" in page


def test_the_live_parts_follow_the_balance(db: Session) -> None:
    customer = make_user(db)
    fund(db, customer, "7.25")
    parts = users_page.live_parts(db, customer.id)
    assert parts is not None
    assert 'id="user-balance"' in parts and "7.25 USD" in parts
    assert 'hx-swap-oob="true"' in parts
    assert users_page.live_parts(db, uuid.UUID(int=0)) is None
