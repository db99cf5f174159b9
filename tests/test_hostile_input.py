"""Input that once produced a 500: every one must be a clear 4xx and change nothing."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/login", {"login": "a\u0000b", "password": "whatever1"}),
        ("/api/v1/auth/resend-verification", {"email": "a\u0000@example.com"}),
        ("/api/v1/auth/password-reset/request", {"email": "a\u0000@example.com"}),
        (
            "/api/v1/auth/register",
            {
                "email": "n@example.com",
                "username": "nul",
                "password": "x" * 12,
                "first_name": "\u0000",
            },
        ),
    ],
)
def test_nul_characters_in_bodies_are_422(
    client: TestClient, path: str, body: dict[str, str]
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/validation"


def test_nul_in_nested_json_is_422(client: TestClient, db: Session) -> None:
    admin = make_user(db, role="admin")
    headers = bearer(login(client, admin.username, PASSWORD))
    body = {
        "name": "N",
        "slug": "nul-plan",
        "specs_json": {"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
        "pricing_json": {"monthly": "1.00"},
        "features_json": ["ok", "bad\u0000"],
    }
    assert client.post("/api/v1/admin/products", json=body, headers=headers).status_code == 422
    setting = client.put(
        "/api/v1/admin/settings/support.categories", json={"value": ["a\u0000"]}, headers=headers
    )
    assert setting.status_code == 422


@pytest.mark.parametrize(
    "url", ["/api/v1/products/abc%00def", "/api/v1/products?cursor=%00", "/api/v1/regions?x=%00"]
)
def test_nul_in_the_address_is_400(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def _cursor(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "values", [[0, 5], [0, ["x"]], [10**30, "00000000-0000-0000-0000-000000000000"], [True, None]]
)
def test_forged_cursors_are_422(client: TestClient, values: object) -> None:
    response = client.get("/api/v1/products", params={"cursor": _cursor(values)})
    assert response.status_code == 422


# Arabic-Indic, superscript and full-width digits: str.isdigit() says yes to all of them.
@pytest.mark.parametrize("code", ["١٢٣٤٥٦", "¹²³⁴⁵⁶", "12345\uff16"])
def test_non_ascii_digits_in_totp_codes_are_refused_cleanly(
    client: TestClient, db: Session, code: str
) -> None:
    user = make_user(db)
    headers = bearer(login(client, user.username, PASSWORD))
    client.post("/api/v1/me/2fa/setup", headers=headers)
    response = client.post("/api/v1/me/2fa/enable", json={"code": code}, headers=headers)
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/invalid-two-factor-code"
