"""User administration: search, read, change role / status / verification; last-admin guard."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.accounts import api_tokens
from vmcloud.accounts.models import User
from vmcloud.audit.models import AuditLog

USERS = "/api/v1/admin/users"


@pytest.fixture
def admin_user(db: Session) -> User:
    return make_user(db, role="admin", username="root-admin")


@pytest.fixture
def admin(client: TestClient, admin_user: User) -> dict[str, str]:
    return bearer(login(client, admin_user.username, PASSWORD))


def test_search_by_substring_role_and_status(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    make_user(db, username="findme-one", email="one@findme.test")
    make_user(db, username="other", email="findme-two@example.com", status="suspended")
    make_user(db, username="staffer", role="support")
    found = client.get(USERS, params={"q": "FINDME"}, headers=admin).json()["items"]
    assert {u["username"] for u in found} == {"findme-one", "other"}
    suspended = client.get(
        USERS, params={"q": "findme", "status": "suspended"}, headers=admin
    ).json()["items"]
    assert [u["username"] for u in suspended] == ["other"]
    support = client.get(USERS, params={"role": "support"}, headers=admin).json()["items"]
    assert "staffer" in {u["username"] for u in support}
    assert {u["role"] for u in support} == {"support"}


def test_search_treats_wildcards_literally(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    make_user(db, username="plain-name")
    assert client.get(USERS, params={"q": "%"}, headers=admin).json()["items"] == []
    assert client.get(USERS, params={"q": "_"}, headers=admin).json()["items"] == []


def test_listing_is_newest_first_and_paginates(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    for i in range(5):
        make_user(db, username=f"page-user-{i}")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": "page-user", "limit": 2} | ({"cursor": cursor} if cursor else {})
        body = client.get(USERS, params=params, headers=admin).json()
        seen += [u["username"] for u in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == [f"page-user-{i}" for i in range(5)]
    assert len(seen) == len(set(seen))


def test_read_one_and_unknown_is_404(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    user = make_user(db, username="readable")
    body = client.get(f"{USERS}/{user.id}", headers=admin).json()
    assert body["username"] == "readable" and "password_hash" not in body
    assert client.get(f"{USERS}/{uuid.uuid4()}", headers=admin).status_code == 404
    assert client.get(f"{USERS}/not-a-uuid", headers=admin).status_code == 422


def test_suspending_ends_the_users_logins_at_once(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    user = make_user(db, username="to-suspend")
    tokens = login(client, "to-suspend", PASSWORD)
    response = client.patch(f"{USERS}/{user.id}", json={"status": "suspended"}, headers=admin)
    assert response.status_code == 200
    assert response.json()["status"] == "suspended"
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 401
    assert (
        client.post(
            "/api/v1/auth/login", json={"login": "to-suspend", "password": PASSWORD}
        ).status_code
        == 403
    )
    # Reactivated, the user can log in again (old logins stay ended).
    client.patch(f"{USERS}/{user.id}", json={"status": "active"}, headers=admin)
    login(client, "to-suspend", PASSWORD)
    assert (
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        ).status_code
        == 401
    )


def test_role_and_verification_changes(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    user = make_user(db, email_verified=False)
    response = client.patch(
        f"{USERS}/{user.id}", json={"role": "support", "email_verified": True}, headers=admin
    )
    assert response.status_code == 200
    db.refresh(user)
    assert (user.role, user.email_verified) == ("support", True)


@pytest.mark.parametrize(
    "body",
    [
        {"role": "root"},
        {"status": "deleted"},
        {"email_verified": "maybe"},
        {"balance": "100.00"},
        {"email": "x@example.com"},
        {"password_hash": "x"},
        {"role": None},
    ],
)
def test_bad_admin_updates_are_422(
    client: TestClient, db: Session, admin: dict[str, str], body: dict[str, object]
) -> None:
    user = make_user(db)
    assert client.patch(f"{USERS}/{user.id}", json=body, headers=admin).status_code == 422
    db.refresh(user)
    assert (user.role, user.status) == ("customer", "active")


def test_the_last_active_admin_cannot_be_demoted_or_locked_out(
    client: TestClient, db: Session, admin_user: User, admin: dict[str, str]
) -> None:
    # The seeded database has no admin; the fixture's is the only one.
    for body in ({"role": "customer"}, {"status": "suspended"}, {"status": "closed"}):
        response = client.patch(f"{USERS}/{admin_user.id}", json=body, headers=admin)
        assert response.status_code == 409, body
        assert response.json()["type"] == "/problems/last-admin"
    db.refresh(admin_user)
    assert (admin_user.role, admin_user.status) == ("admin", "active")
    # With a second admin, the first may step down.
    make_user(db, role="admin", username="second-admin")
    response = client.patch(f"{USERS}/{admin_user.id}", json={"role": "support"}, headers=admin)
    assert response.status_code == 200


def test_support_can_read_but_not_change(client: TestClient, db: Session) -> None:
    staff = make_user(db, role="support")
    headers = bearer(login(client, staff.username, PASSWORD))
    target = make_user(db)
    assert client.get(f"{USERS}/{target.id}", headers=headers).status_code == 200
    assert (
        client.patch(f"{USERS}/{target.id}", json={"status": "banned"}, headers=headers).status_code
        == 403
    )


def test_revoking_sessions_ends_every_login_and_token(
    client: TestClient, db: Session, admin: dict[str, str], admin_user: User
) -> None:
    user = make_user(db, username="logged-in-twice")
    first = login(client, user.username, PASSWORD)
    second = login(client, user.username, PASSWORD)
    _, secret = api_tokens.create_token(
        db=db, user=user, name="script", scopes=["instances:read"], expires_at=None
    )
    assert (
        client.get("/api/v1/instances", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 200
    )

    response = client.post(f"{USERS}/{user.id}/sessions/revoke", headers=admin)

    assert response.status_code == 200, response.text
    assert response.json() == {"sessions_revoked": 2, "api_tokens_revoked": 1}
    for tokens in (first, second):
        assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 401
        refresh = {"refresh_token": tokens["refresh_token"]}
        assert client.post("/api/v1/auth/refresh", json=refresh).status_code == 401
    assert (
        client.get("/api/v1/instances", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    row = db.scalar(
        select(AuditLog).where(
            AuditLog.action == "user.sessions_revoke", AuditLog.entity_id == user.id
        )
    )
    assert row is not None and row.user_id == admin_user.id
    assert row.metadata_json == {"sessions_revoked": 2, "api_credentials_revoked": 1}
    # The account itself is untouched: the user logs in again.
    assert db.get(User, user.id).status == "active"  # type: ignore[union-attr]
    login(client, user.username, PASSWORD)
    assert client.post(f"{USERS}/{uuid.uuid4()}/sessions/revoke", headers=admin).status_code == 404
