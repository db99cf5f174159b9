"""Personal API tokens: made with a login (POST /me/tokens), shown once, stored hashed, accepted
as bearer tokens within their scopes, refused once revoked or expired, never able to mint
tokens or touch logins; and every API route belongs to a scope area."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.accounts import api_tokens
from vmcloud.accounts.deps import PersonalToken
from vmcloud.accounts.models import ApiToken
from vmcloud.audit.models import AuditLog
from vmcloud.core.clock import utcnow

TOKENS = "/api/v1/me/tokens"


@pytest.fixture
def session(client: TestClient, db: Session) -> dict[str, str]:
    user = make_user(db, balance="50.00", username="token-owner")
    return bearer(login(client, user.username, PASSWORD))


def _make(client: TestClient, headers: dict[str, str], *scopes: str, **extra: Any) -> Any:
    body = {"name": "ci", "scopes": list(scopes), **extra}
    made = client.post(TOKENS, json=body, headers=headers)
    assert made.status_code == 201, made.text
    return made.json()


def _as(token: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['token']}"}


def test_a_token_is_shown_once_stored_hashed_and_works(
    client: TestClient, db: Session, session: dict[str, str]
) -> None:
    token = _make(client, session, "account:read", "billing:read")
    secret = token["token"]
    assert secret.startswith("vmc_pat_") and len(secret) > 40
    assert token["prefix"] == secret[: len(token["prefix"])]
    row = db.get(ApiToken, uuid.UUID(token["id"]))
    assert row is not None
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str([row.name, row.prefix, row.scopes])
    listed = client.get(TOKENS, headers=session).json()
    assert [t["id"] for t in listed] == [token["id"]]
    assert "token" not in listed[0]

    me = client.get("/api/v1/me", headers=_as(token))
    assert me.status_code == 200 and me.json()["username"] == "token-owner"
    assert client.get("/api/v1/billing/balance", headers=_as(token)).status_code == 200
    created = db.scalars(
        select(AuditLog.action).where(AuditLog.entity_id == uuid.UUID(token["id"]))
    ).all()
    assert created == ["api_token.create"]
    assert secret not in str(db.scalars(select(AuditLog.new_values)).all())


def test_a_read_only_token_cannot_write_and_another_area_is_refused(
    client: TestClient, session: dict[str, str]
) -> None:
    token = _make(client, session, "account:read")
    write = client.patch("/api/v1/me", json={"first_name": "Eve"}, headers=_as(token))
    assert write.status_code == 403
    assert write.json()["type"].endswith("/insufficient-scope")
    assert "account:write" in write.json()["detail"]
    other_area = client.get("/api/v1/instances", headers=_as(token))
    assert other_area.status_code == 403
    assert "instances:read" in other_area.json()["detail"]

    full = _make(client, session, "account:write")
    assert client.patch("/api/v1/me", json={"first_name": "Ada"}, headers=_as(full)).is_success
    assert client.get("/api/v1/me", headers=_as(full)).json()["first_name"] == "Ada"


def test_a_customer_cannot_have_an_admin_scope_nor_an_unknown_one(
    client: TestClient, session: dict[str, str]
) -> None:
    for scopes in (["admin:read"], ["nothing:read"], []):
        refused = client.post(TOKENS, json={"name": "x", "scopes": scopes}, headers=session)
        assert refused.status_code == 422, (scopes, refused.text)
    past = client.post(
        TOKENS,
        json={"name": "x", "scopes": ["account:read"], "expires_at": "2000-01-01T00:00:00Z"},
        headers=session,
    )
    assert past.status_code == 422
    assert client.get(TOKENS, headers=session).json() == []


def test_staff_tokens_reach_admin_routes_only_with_the_admin_scope(
    client: TestClient, db: Session
) -> None:
    admin = make_user(db, role="admin")
    headers = bearer(login(client, admin.username, PASSWORD))
    with_admin = _make(client, headers, "admin:read")
    without = _make(client, headers, "account:write")
    assert client.get("/api/v1/admin/users", headers=_as(with_admin)).status_code == 200
    assert client.get("/api/v1/admin/users", headers=_as(without)).status_code == 403
    assert (
        client.patch(
            f"/api/v1/admin/users/{admin.id}", json={"role": "admin"}, headers=_as(with_admin)
        ).status_code
        == 403
    )


def test_a_revoked_token_stops_working_and_revoking_is_audited(
    client: TestClient, db: Session, session: dict[str, str]
) -> None:
    token = _make(client, session, "account:write")
    assert client.get("/api/v1/me", headers=_as(token)).status_code == 200
    revoked = client.delete(f"{TOKENS}/{token['id']}", headers=session)
    assert revoked.status_code == 204
    after = client.get("/api/v1/me", headers=_as(token))
    assert after.status_code == 401 and "revoked" in after.json()["detail"]
    assert client.get(TOKENS, headers=session).json() == []
    assert client.delete(f"{TOKENS}/{token['id']}", headers=session).status_code == 404
    actions = db.scalars(
        select(AuditLog.action).where(AuditLog.entity_id == uuid.UUID(token["id"]))
    ).all()
    assert sorted(actions) == ["api_token.create", "api_token.revoke"]


def test_another_users_token_cannot_be_revoked(
    client: TestClient, db: Session, session: dict[str, str]
) -> None:
    other = make_user(db)
    theirs, _ = api_tokens.create_token(
        db=db, user=other, name="x", scopes=["account:read"], expires_at=None
    )
    assert client.delete(f"{TOKENS}/{theirs.id}", headers=session).status_code == 404
    db.refresh(theirs)
    assert theirs.revoked_at is None


def test_an_expired_token_and_a_suspended_owner_are_401(
    client: TestClient, db: Session, session: dict[str, str]
) -> None:
    soon = (utcnow() + timedelta(days=1)).isoformat() + "Z"
    token = _make(client, session, "account:read", expires_at=soon)
    assert client.get("/api/v1/me", headers=_as(token)).status_code == 200
    db.execute(
        update(ApiToken)
        .where(ApiToken.id == uuid.UUID(token["id"]))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    expired = client.get("/api/v1/me", headers=_as(token))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]

    other = make_user(db)
    _, secret = api_tokens.create_token(
        db=db, user=other, name="x", scopes=["account:read"], expires_at=None
    )
    other.status = "suspended"
    db.flush()
    assert (
        client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    )
    unknown = client.get("/api/v1/me", headers={"Authorization": "Bearer vmc_pat_nothing"})
    assert unknown.status_code == 401


def test_last_used_is_written_at_most_once_a_minute(
    client: TestClient, db: Session, session: dict[str, str]
) -> None:
    token = _make(client, session, "account:read")
    token_id = uuid.UUID(token["id"])
    client.get("/api/v1/me", headers=_as(token))
    row = db.get(ApiToken, token_id)
    assert row is not None
    db.refresh(row)
    first = row.last_used_at
    assert first is not None
    client.get("/api/v1/me", headers=_as(token))
    db.refresh(row)
    assert row.last_used_at == first  # within the minute: not written again
    earlier = first - timedelta(minutes=2)
    db.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=earlier))
    client.get("/api/v1/me", headers=_as(token))
    db.refresh(row)
    assert row.last_used_at is not None and row.last_used_at > earlier + timedelta(minutes=1)
    # Using the token wrote no audit row.
    actions = db.scalars(select(AuditLog.action).where(AuditLog.entity_id == token_id)).all()
    assert actions == ["api_token.create"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", TOKENS, {"name": "more", "scopes": ["account:read"]}),
        ("POST", "/api/v1/me/password", {"current_password": PASSWORD, "new_password": "x" * 12}),
        ("POST", "/api/v1/me/2fa/setup", None),
        ("GET", "/api/v1/me/sessions", None),
        ("POST", "/api/v1/me/sessions/revoke-others", None),
        ("DELETE", "/api/v1/me/sessions/5e1f0c9a-0000-4000-8000-000000000001", None),
        ("POST", "/api/v1/auth/logout", {"refresh_token": "x" * 20}),
    ],
)
def test_a_token_never_mints_tokens_nor_touches_logins_or_the_password(
    client: TestClient, session: dict[str, str], method: str, path: str, body: Any
) -> None:
    token = _make(client, session, "account:write")
    refused = client.request(method, path, json=body, headers=_as(token))
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"].endswith("/login-required")
    assert [t["id"] for t in client.get(TOKENS, headers=session).json()] == [token["id"]]


def test_every_authenticated_api_route_has_a_scope_area(app: FastAPI) -> None:
    missing = [
        route.path_format
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        and route.path_format.startswith("/api/v1")
        and api_tokens.area_of(route.path_format) is None
    ]
    assert missing == []
    assert api_tokens.area_of("/api/v1/instancesx") is None
    assert api_tokens.area_of("/api/v1/nowhere") is None


def test_the_secret_never_appears_in_a_credentials_repr() -> None:
    secret = "vmc_pat_" + "s" * 43
    assert "sss" not in repr(PersonalToken(secret))


def test_the_cap_counts_live_tokens_only(
    client: TestClient, db: Session, session: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_tokens, "MAX_TOKENS_PER_USER", 2)
    revoked, expired = (
        _make(client, session, "account:read"),
        _make(client, session, "account:read"),
    )
    assert (
        client.post(
            TOKENS, json={"name": "x", "scopes": ["account:read"]}, headers=session
        ).status_code
        == 409
    )
    assert client.delete(f"{TOKENS}/{revoked['id']}", headers=session).status_code == 204
    db.execute(
        update(ApiToken)
        .where(ApiToken.id == uuid.UUID(expired["id"]))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    _make(client, session, "account:read")
    _make(client, session, "account:read")  # the expired one no longer counts


def test_a_replayed_creation_makes_no_second_token_and_shows_no_secret(
    client: TestClient, session: dict[str, str]
) -> None:
    headers = {**session, "Idempotency-Key": "make-ci-token-1"}
    body = {"name": "ci", "scopes": ["account:read"]}
    first = client.post(TOKENS, json=body, headers=headers)
    assert first.status_code == 201 and first.json()["token"].startswith("vmc_pat_")
    again = client.post(TOKENS, json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert "token" not in again.json() and first.json()["token"] not in again.text
    assert again.json()["id"] == first.json()["id"]
    assert [t["id"] for t in client.get(TOKENS, headers=session).json()] == [first.json()["id"]]
    other = client.post(TOKENS, json={**body, "name": "other"}, headers=headers)
    assert other.status_code == 409
