"""The role dependencies every later route uses: anonymous, customer, support, admin."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.accounts.deps import AdminUser, CurrentUser, StaffUser, VerifiedUser


@pytest.fixture
def probe(app: FastAPI, client: TestClient) -> TestClient:
    router = APIRouter(prefix="/probe")

    @router.get("/user")
    def any_user(user: CurrentUser) -> dict[str, str]:
        return {"role": user.role}

    @router.get("/staff")
    def staff(user: StaffUser) -> dict[str, str]:
        return {"role": user.role}

    @router.get("/admin")
    def admin(user: AdminUser) -> dict[str, str]:
        return {"role": user.role}

    @router.post("/verified")
    def verified(user: VerifiedUser) -> dict[str, str]:
        return {"role": user.role}

    app.include_router(router)
    return client


def _headers(client: TestClient, db: Session, role: str | None) -> dict[str, str]:
    if role is None:
        return {}
    user = make_user(db, role=role)
    return bearer(login(client, user.username, PASSWORD))


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (None, {"user": 401, "staff": 401, "admin": 401}),
        ("customer", {"user": 200, "staff": 403, "admin": 403}),
        ("support", {"user": 200, "staff": 200, "admin": 403}),
        ("admin", {"user": 200, "staff": 200, "admin": 200}),
    ],
)
def test_role_matrix(
    probe: TestClient, db: Session, role: str | None, expected: dict[str, int]
) -> None:
    headers = _headers(probe, db, role)
    got = {path: probe.get(f"/probe/{path}", headers=headers).status_code for path in expected}
    assert got == expected


def test_a_demoted_admin_loses_admin_routes_at_once(probe: TestClient, db: Session) -> None:
    user = make_user(db, role="admin")
    headers = bearer(login(probe, user.username, PASSWORD))
    assert probe.get("/probe/admin", headers=headers).status_code == 200
    user.role = "customer"
    db.flush()
    assert probe.get("/probe/admin", headers=headers).status_code == 403


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt", "Token abc"]
)
def test_malformed_authorization_headers_are_401(probe: TestClient, header: str) -> None:
    response = probe.get("/probe/user", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_unverified_email_may_log_in_but_not_act(probe: TestClient, db: Session) -> None:
    user = make_user(db, email_verified=False)
    headers = bearer(login(probe, user.username, PASSWORD))
    assert probe.get("/probe/user", headers=headers).status_code == 200
    refused = probe.post("/probe/verified", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["type"] == "/problems/email-unverified"
    user.email_verified = True
    db.flush()
    assert probe.post("/probe/verified", headers=headers).status_code == 200
