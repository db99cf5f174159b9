"""Typed site settings: public view, admin edit with validation, cache across processes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.app import create_app
from vmcloud.core.errors import InvalidInputError
from vmcloud.site_settings import service
from vmcloud.site_settings.models import Setting

PUBLIC = "/api/v1/settings/public"
ADMIN = "/api/v1/admin/settings"


@pytest.fixture
def admin(client: TestClient, db: Session) -> dict[str, str]:
    user = make_user(db, role="admin")
    return bearer(login(client, user.username, PASSWORD))


def test_public_settings_are_typed_and_only_public(client: TestClient) -> None:
    public = client.get(PUBLIC).json()
    assert public["billing.currency"] == "USD"
    assert public["auth.registration_enabled"] is True
    assert public["billing.grace_days"] == 7
    assert public["billing.topup_min"] == "5.00"  # money stays a decimal string
    assert isinstance(public["support.categories"], list)
    assert "compute.metrics_interval_seconds" not in public  # not public


def test_admin_lists_every_setting_with_its_type(client: TestClient, admin: dict[str, str]) -> None:
    items = client.get(ADMIN, headers=admin).json()["items"]
    by_key = {s["key"]: s for s in items}
    assert by_key["compute.metrics_interval_seconds"]["value"] == 60
    assert by_key["billing.grace_days"]["type"] == "number"
    assert all(s["description"] for s in items)  # every seeded setting explains itself


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("site.name", "Acme Cloud", "Acme Cloud"),
        ("auth.registration_enabled", False, False),
        ("billing.grace_days", 14, 14),
        ("billing.topup_min", "10.50", "10.50"),
        ("billing.topup_min", 12, "12.00"),
        ("support.categories", ["billing", "tech"], ["billing", "tech"]),
        ("billing.currency", "EUR", "EUR"),
    ],
)
def test_a_public_change_shows_at_once(
    client: TestClient, admin: dict[str, str], key: str, value: Any, shown: Any
) -> None:
    response = client.put(f"{ADMIN}/{key}", json={"value": value}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["value"] == shown
    assert client.get(PUBLIC).json()[key] == shown


BAD: list[tuple[str, Any]] = [
    ("site.name", 42),
    ("site.name", ""),
    ("site.name", None),
    ("auth.registration_enabled", "yes"),
    ("auth.registration_enabled", 1),
    ("billing.grace_days", "seven"),
    ("billing.grace_days", -1),
    ("billing.grace_days", 1.5),
    ("billing.grace_days", True),
    ("billing.topup_min", "5.001"),
    ("billing.topup_min", "NaN"),
    ("billing.topup_min", "Infinity"),
    ("billing.topup_min", 0),
    ("billing.topup_min", 5000),  # above topup_max
    ("billing.topup_max", "1.00"),  # below topup_min
    ("billing.currency", "usd"),
    ("billing.currency", "EURO"),
    ("support.categories", []),
    ("support.categories", "billing"),
    ("support.categories", ["a", "a"]),
    ("support.categories", [1, 2]),
    ("support.attachment_types", ["not a mime type"]),
    ("billing.payment_providers", ["paypal"]),
    ("site.support_email", "nobody"),
    ("billing.topup_max", "1E+30"),  # too large to keep in cents
    ("billing.topup_max", 1e300),
    ("billing.topup_min", "1e999"),
    ("billing.grace_days", "1e9999999"),
    ("site.name", "nul\x00byte"),
]


@pytest.mark.parametrize(("key", "value"), BAD)
def test_values_that_do_not_fit_are_422_and_change_nothing(
    client: TestClient, db: Session, admin: dict[str, str], key: str, value: Any
) -> None:
    before = db.scalar(select(Setting.value).where(Setting.key == key))
    response = client.put(f"{ADMIN}/{key}", json={"value": value}, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/validation"
    assert response.json()["errors"][0]["field"] == "value"
    assert db.scalar(select(Setting.value).where(Setting.key == key)) == before


@pytest.mark.parametrize("body", [{}, {"value": 1, "type": "string"}, [1], "x"])
def test_malformed_bodies_are_422(client: TestClient, admin: dict[str, str], body: Any) -> None:
    assert client.put(f"{ADMIN}/site.name", json=body, headers=admin).status_code == 422


def test_unknown_setting_is_404(client: TestClient, admin: dict[str, str]) -> None:
    response = client.put(f"{ADMIN}/no.such.key", json={"value": "x"}, headers=admin)
    assert response.status_code == 404


def test_operator_added_settings_are_checked_by_type(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    db.add(Setting(key="custom.limit", value="3", type="number", is_public=True))
    db.add(Setting(key="custom.blob", value="{}", type="json", is_public=False))
    db.flush()
    assert (
        client.put(f"{ADMIN}/custom.limit", json={"value": "x"}, headers=admin).status_code == 422
    )
    assert client.put(f"{ADMIN}/custom.limit", json={"value": 9}, headers=admin).status_code == 200
    blob = client.put(f"{ADMIN}/custom.blob", json={"value": {"a": [1, None]}}, headers=admin)
    assert blob.json()["value"] == {"a": [1, None]}
    assert client.get(PUBLIC).json()["custom.limit"] == 9


@pytest.mark.parametrize("value", ["\ud800", {"a": "\x00"}, {"\udfff": 1}, [float("nan")]])
def test_json_values_that_cannot_be_stored_or_served_are_422(
    client: TestClient, db: Session, admin: dict[str, str], value: Any
) -> None:
    db.add(Setting(key="custom.blob", value="{}", type="json", is_public=True))
    db.flush()
    body = json.dumps({"value": value})  # NaN and lone surrogates as Python's json writes them
    headers = {**admin, "content-type": "application/json"}
    answer = client.put(f"{ADMIN}/custom.blob", content=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert db.scalar(select(Setting.value).where(Setting.key == "custom.blob")) == "{}"
    assert client.get(ADMIN, headers=admin).status_code == 200
    assert client.get(PUBLIC).json()["custom.blob"] == {}


def test_huge_numbers_are_refused_before_any_rule_runs(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Never:
        def validate(self, value: Any) -> Any:
            raise AssertionError("validated a number it should have refused")

    monkeypatch.setitem(service.REGISTRY, "billing.grace_days", Never())
    for huge in ("1e9999999", "1" * 40, 10**40):
        with pytest.raises(InvalidInputError) as refused:
            service.update_setting(db=db, key="billing.grace_days", value=huge)
        assert refused.value.errors[0]["message"] == "too many digits"


def test_a_change_reaches_another_api_process_within_the_cache_lifetime(
    client: TestClient,
    db: Session,
    admin: dict[str, str],
    app: FastAPI,
    engine: Any,
    app_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vmcloud.db.session import make_session_factory

    # A second process: its own app and its own session factory, hence its own cache.
    other_factory = make_session_factory(
        app.state.session_factory.kw["bind"], join_transaction_mode="create_savepoint"
    )
    other_app = create_app(app_settings, engine=engine, session_factory=other_factory)
    with TestClient(other_app) as other:
        assert other.get(PUBLIC).json()["site.name"] == "VMCloud"  # cached now
        client.put(f"{ADMIN}/site.name", json={"value": "Renamed Cloud"}, headers=admin)
        assert client.get(PUBLIC).json()["site.name"] == "Renamed Cloud"
        assert other.get(PUBLIC).json()["site.name"] == "VMCloud"  # still within its TTL
        clock = service.time.monotonic() + service.CACHE_TTL + 0.1
        monkeypatch.setattr(service.time, "monotonic", lambda: clock)
        assert other.get(PUBLIC).json()["site.name"] == "Renamed Cloud"


def test_registration_switch_takes_effect(client: TestClient, admin: dict[str, str]) -> None:
    client.put(f"{ADMIN}/auth.registration_enabled", json={"value": False}, headers=admin)
    response = client.post(
        "/api/v1/auth/register",
        json={"email": "late@example.com", "username": "late", "password": "long enough!"},
    )
    assert response.status_code == 403
