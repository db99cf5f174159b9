"""GET and PATCH /me: a customer edits their name and phone, and nothing else."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.accounts.models import User
from vmcloud.audit.models import AuditLog

ME = "/api/v1/me"


@pytest.fixture
def auth(client: TestClient, db: Session) -> dict[str, str]:
    make_user(db, username="quinn", email="quinn@example.com")
    return bearer(login(client, "quinn", PASSWORD))


def test_read_me(client: TestClient, auth: dict[str, str]) -> None:
    me = client.get(ME, headers=auth).json()
    assert me["username"] == "quinn"
    assert me["email"] == "quinn@example.com"
    assert me["created_at"].endswith("Z")
    assert "password_hash" not in me and "two_factor_secret" not in me


def test_me_needs_a_login(client: TestClient) -> None:
    response = client.get(ME)
    assert response.status_code == 401
    assert response.json()["type"] == "/problems/unauthorized"


def test_patch_updates_only_the_given_fields(
    client: TestClient, db: Session, auth: dict[str, str]
) -> None:
    first = client.patch(ME, json={"first_name": "Quinn", "phone": "+1 555 0100"}, headers=auth)
    assert first.status_code == 200
    second = client.patch(ME, json={"last_name": "Doe"}, headers=auth).json()
    assert (second["first_name"], second["last_name"], second["phone"]) == (
        "Quinn",
        "Doe",
        "+1 555 0100",
    )
    cleared = client.patch(ME, json={"phone": None}, headers=auth).json()
    assert cleared["phone"] is None
    row = db.scalars(select(AuditLog).where(AuditLog.action == "user.update")).first()
    assert row is not None and row.new_values == {"first_name": "Quinn", "phone": "+1 555 0100"}


@pytest.mark.parametrize(
    "body",
    [
        {"role": "admin"},
        {"balance": "1000.00"},
        {"email_verified": True},
        {"status": "active"},
        {"email": "new@example.com"},
        {"first_name": "Q", "role": "admin"},
    ],
)
def test_mass_assignment_is_rejected(
    client: TestClient, db: Session, auth: dict[str, str], body: dict[str, object]
) -> None:
    response = client.patch(ME, json=body, headers=auth)
    assert response.status_code == 422
    user = db.scalar(select(User).where(User.username == "quinn"))
    assert user is not None
    db.refresh(user)
    assert (user.role, user.balance, user.first_name) == ("customer", 0, None)


@pytest.mark.parametrize("body", [{"phone": "drop table"}, {"first_name": "x" * 101}, []])
def test_bad_values_are_422(client: TestClient, auth: dict[str, str], body: object) -> None:
    assert client.patch(ME, json=body, headers=auth).status_code == 422
