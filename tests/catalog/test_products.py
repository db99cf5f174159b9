"""Products (VM plans): public catalogue, admin create / update / archive, validation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import make_product, product_body
from tests.helpers import bearer, login
from vmcloud.catalog.models import Product
from vmcloud.compute.models import Instance

ADMIN = "/api/v1/admin/products"


@pytest.fixture
def admin(client: TestClient, db: Session) -> dict[str, str]:
    user = make_user(db, role="admin")
    return bearer(login(client, user.username, PASSWORD))


def test_public_listing_shows_active_plans_by_sort_order(client: TestClient, db: Session) -> None:
    make_product(db, slug="zz-last", sort_order=10_000)
    make_product(db, slug="aa-first", sort_order=-5)
    make_product(db, slug="secret-plan", status="hidden", sort_order=1)
    make_product(db, slug="old-plan", status="archived", sort_order=2)
    items = client.get("/api/v1/products", params={"limit": 200}).json()["items"]
    slugs = [p["slug"] for p in items]
    assert slugs[0] == "aa-first" and slugs[-1] == "zz-last"
    assert "secret-plan" not in slugs and "old-plan" not in slugs
    assert {"nano", "micro", "small", "medium", "large"} <= set(slugs)  # the seeded catalogue
    orders = [p["sort_order"] for p in items]
    assert orders == sorted(orders)


def test_public_listing_paginates(client: TestClient) -> None:
    first = client.get("/api/v1/products", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = client.get(
        "/api/v1/products", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert not {p["id"] for p in first["items"]} & {p["id"] for p in second["items"]}


def test_lookup_by_id_or_slug(client: TestClient, db: Session) -> None:
    product = make_product(db, slug="lookup-me")
    by_slug = client.get("/api/v1/products/lookup-me").json()
    by_id = client.get(f"/api/v1/products/{product.id}").json()
    assert by_slug == by_id
    assert by_slug["pricing_json"] == {"hourly": "0.017123", "monthly": "12.00", "yearly": "120.00"}
    hidden = make_product(db, slug="unlisted", status="hidden")
    assert client.get(f"/api/v1/products/{hidden.slug}").status_code == 200  # by direct link
    archived = make_product(db, slug="gone", status="archived")
    assert client.get(f"/api/v1/products/{archived.slug}").status_code == 404
    assert client.get(f"/api/v1/products/{uuid.uuid4()}").status_code == 404
    assert client.get("/api/v1/products/no-such-plan").status_code == 404


def test_admin_creates_updates_and_deletes_an_unused_plan(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    created = client.post(ADMIN, json=product_body(slug="fresh-plan"), headers=admin)
    assert created.status_code == 201, created.text
    product_id = created.json()["id"]
    updated = client.patch(
        f"{ADMIN}/{product_id}",
        json={"name": "Renamed", "pricing_json": {"monthly": "15.50"}},
        headers=admin,
    )
    assert updated.status_code == 200
    assert updated.json()["name"] == "Renamed"
    assert updated.json()["pricing_json"] == {"monthly": "15.50"}
    assert updated.json()["slug"] == "fresh-plan"  # untouched fields stay
    deleted = client.delete(f"{ADMIN}/fresh-plan", headers=admin)
    assert deleted.status_code == 204
    assert db.scalar(select(Product).where(Product.slug == "fresh-plan")) is None


def test_delete_archives_a_plan_instances_use(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    product = make_product(db, slug="in-use")
    owner = make_user(db)
    db.add(Instance(user_id=owner.id, product_id=product.id, name="vm", status="running"))
    db.flush()
    response = client.delete(f"{ADMIN}/{product.id}", headers=admin)
    assert response.status_code == 200
    assert response.json()["status"] == "archived"
    db.refresh(product)
    assert product.status == "archived"
    assert client.get("/api/v1/products/in-use").status_code == 404
    # Archiving again is harmless.
    assert client.delete(f"{ADMIN}/{product.id}", headers=admin).status_code == 200


def test_duplicate_slug_is_409(client: TestClient, db: Session, admin: dict[str, str]) -> None:
    make_product(db, slug="taken-slug")
    response = client.post(ADMIN, json=product_body(slug="taken-slug"), headers=admin)
    assert response.status_code == 409
    assert response.json()["errors"] == [{"field": "slug", "message": "already in use"}]
    other = make_product(db, slug="other-slug")
    clash = client.patch(f"{ADMIN}/{other.id}", json={"slug": "taken-slug"}, headers=admin)
    assert clash.status_code == 409


def test_admin_sees_every_status_and_filters(
    client: TestClient, db: Session, admin: dict[str, str]
) -> None:
    make_product(db, slug="hid", status="hidden")
    make_product(db, slug="arc", status="archived")
    everything = client.get(ADMIN, params={"limit": 200}, headers=admin).json()["items"]
    assert {"hid", "arc", "nano"} <= {p["slug"] for p in everything}
    hidden = client.get(ADMIN, params={"status": "hidden"}, headers=admin).json()["items"]
    assert {p["status"] for p in hidden} == {"hidden"}
    assert client.get(ADMIN, params={"status": "weird"}, headers=admin).status_code == 422
    assert client.get(f"{ADMIN}/{uuid.uuid4()}", headers=admin).status_code == 404


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("name", {"name": ""}),
    ("name", {"name": "x" * 256}),
    ("slug", {"slug": "Upper-Case"}),
    ("slug", {"slug": "under_score"}),
    ("slug", {"slug": "-leading"}),
    ("slug", {"slug": "double--dash"}),
    ("slug", {"slug": ""}),
    ("specs_json", {"specs_json": {"vcpus": 0, "memory_mb": 512, "disk_gb": 10}}),
    ("specs_json", {"specs_json": {"vcpus": -1, "memory_mb": 512, "disk_gb": 10}}),
    ("specs_json", {"specs_json": {"vcpus": 1.5, "memory_mb": 512, "disk_gb": 10}}),
    ("specs_json", {"specs_json": {"vcpus": "2", "memory_mb": 512, "disk_gb": 10}}),
    ("specs_json", {"specs_json": {"vcpus": 1, "memory_mb": 512}}),
    ("specs_json", {"specs_json": {"vcpus": 1, "memory_mb": 512, "disk_gb": 10, "gpu": 1}}),
    ("specs_json", {"specs_json": [1, 2, 3]}),
    ("specs_json", {"specs_json": "big"}),
    ("pricing_json", {"pricing_json": {}}),
    ("pricing_json", {"pricing_json": {"monthly": 4.0}}),
    ("pricing_json", {"pricing_json": {"monthly": "4.001"}}),
    ("pricing_json", {"pricing_json": {"hourly": "0.0000001"}}),
    ("pricing_json", {"pricing_json": {"monthly": "-1.00"}}),
    ("pricing_json", {"pricing_json": {"monthly": "0"}}),
    ("pricing_json", {"pricing_json": {"monthly": "1e3"}}),
    ("pricing_json", {"pricing_json": {"monthly": "NaN"}}),
    ("pricing_json", {"pricing_json": {"monthly": "123456789.00"}}),
    ("pricing_json", {"pricing_json": {"weekly": "1.00"}}),
    ("pricing_json", {"pricing_json": ["1.00"]}),
    ("features_json", {"features_json": "fast"}),
    ("features_json", {"features_json": [1, 2]}),
    ("features_json", {"features_json": [""]}),
    ("features_json", {"features_json": ["x" * 201]}),
    ("status", {"status": "deleted"}),
    ("sort_order", {"sort_order": "first"}),
    ("id", {"id": str(uuid.uuid4())}),
    ("created_at", {"created_at": "2020-01-01T00:00:00Z"}),
]


@pytest.mark.parametrize(
    ("field", "change"), INVALID, ids=[f"{f}-{i}" for i, (f, _) in enumerate(INVALID)]
)
def test_invalid_product_fields_are_422_and_change_nothing(
    client: TestClient, db: Session, admin: dict[str, str], field: str, change: dict[str, Any]
) -> None:
    before = db.scalar(select(Product.id).where(Product.slug == "valid-base"))
    assert before is None
    response = client.post(ADMIN, json=product_body(slug="valid-base") | change, headers=admin)
    assert response.status_code == 422, response.text
    assert any(e["field"].split(".")[0] == field for e in response.json()["errors"])
    assert db.scalar(select(Product.id).where(Product.slug == "valid-base")) is None


@pytest.mark.parametrize(("field", "change"), INVALID[:32])
def test_invalid_updates_are_422_and_change_nothing(
    client: TestClient, db: Session, admin: dict[str, str], field: str, change: dict[str, Any]
) -> None:
    product = make_product(db, slug="stable")
    response = client.patch(f"{ADMIN}/{product.id}", json=change, headers=admin)
    assert response.status_code == 422, response.text
    db.refresh(product)
    assert (product.slug, product.pricing_json["monthly"]) == ("stable", "12.00")


@pytest.mark.parametrize("field", ["name", "slug", "specs_json", "pricing_json", "status"])
def test_required_fields_cannot_be_nulled(
    client: TestClient, db: Session, admin: dict[str, str], field: str
) -> None:
    product = make_product(db)
    response = client.patch(f"{ADMIN}/{product.id}", json={field: None}, headers=admin)
    assert response.status_code == 422


def test_prices_accept_the_documented_precision(client: TestClient, admin: dict[str, str]) -> None:
    body = product_body(pricing_json={"hourly": "0.000001"})
    response = client.post(ADMIN, json=body, headers=admin)
    assert response.status_code == 201
    assert response.json()["pricing_json"] == {"hourly": "0.000001"}
