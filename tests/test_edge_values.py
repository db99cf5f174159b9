"""Edge values that once produced a 500: each is a clear 4xx on its field and changes nothing."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import product_body
from tests.factories.compute import make_node, make_pool
from tests.helpers import bearer, login
from vmcloud.billing.models import Transaction
from vmcloud.catalog.models import Product

# The last and first instants a datetime can name, pushed past either end by their offset.
OUT_OF_RANGE = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"]
# Arabic-Indic and full-width digits: Decimal() and \d accept them, the platform must not.
FOREIGN_DIGITS = ["\u0665.\u0660\u0660", "\uff15.\uff10\uff10", "1\u0662.00"]


@pytest.fixture
def admin(client: TestClient, db: Session) -> dict[str, str]:
    return bearer(login(client, make_user(db, role="admin").username, PASSWORD))


def _fields(response: object) -> list[str]:
    body = response.json()  # type: ignore[attr-defined]
    return [e["field"] for e in body["errors"]]


@pytest.mark.parametrize("since", OUT_OF_RANGE)
def test_out_of_range_since_on_instance_metrics_is_422(
    client: TestClient, db: Session, since: str
) -> None:
    make_node(db)
    make_pool(db, "198.18.9.0/29")
    owner = make_user(db, balance="50.00")
    auth = bearer(login(client, owner.username, PASSWORD))
    order = {
        "name": "edge-1",
        "product": "nano",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
    }
    created = client.post("/api/v1/instances", json=order, headers=auth)
    assert created.status_code == 202, created.text
    url = f"/api/v1/instances/{created.json()['id']}/metrics"
    response = client.get(url, params={"since": since}, headers=auth)
    assert response.status_code == 422, response.text
    assert _fields(response) == ["query.since"]
    # The far ends themselves, with no offset to push them over, are fine.
    edge = client.get(url, params={"since": "9999-12-31T23:59:59Z"}, headers=auth)
    assert edge.status_code == 200


@pytest.mark.parametrize("field", ["since", "until"])
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_out_of_range_audit_filters_are_422(
    client: TestClient, admin: dict[str, str], field: str, value: str
) -> None:
    response = client.get("/api/v1/admin/audit-logs", params={field: value}, headers=admin)
    assert response.status_code == 422, response.text
    assert _fields(response) == [f"query.{field}"]


def _cursor(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize("name", ["node\u0000", "\ud800", "a\udfffb"])
def test_a_cursor_with_nul_or_a_lone_surrogate_is_422(
    client: TestClient, admin: dict[str, str], name: str
) -> None:
    cursor = _cursor([name, str(uuid.uuid4())])
    response = client.get("/api/v1/admin/nodes", params={"cursor": cursor}, headers=admin)
    assert response.status_code == 422, response.text
    assert _fields(response) == ["cursor"]


@pytest.mark.parametrize("price", FOREIGN_DIGITS)
def test_prices_in_other_scripts_digits_are_422(
    client: TestClient, db: Session, admin: dict[str, str], price: str
) -> None:
    before = db.scalar(select(func.count(Product.id)))
    body = product_body(slug="digits", pricing_json={"monthly": price, "hourly": "0.01"})
    response = client.post("/api/v1/admin/products", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert _fields(response) == ["pricing_json.monthly"]
    assert db.scalar(select(func.count(Product.id))) == before


@pytest.mark.parametrize("amount", FOREIGN_DIGITS)
def test_amounts_in_other_scripts_digits_are_422(
    client: TestClient, db: Session, admin: dict[str, str], amount: str
) -> None:
    customer = make_user(db)
    credit = client.post(
        f"/api/v1/admin/users/{customer.id}/credits",
        json={"amount": amount, "reason": "digits"},
        headers=admin,
    )
    assert credit.status_code == 422, credit.text
    assert _fields(credit) == ["amount"]
    auth = bearer(login(client, customer.username, PASSWORD))
    top_up = client.post(
        "/api/v1/billing/top-ups", json={"amount": amount, "provider": "sandbox"}, headers=auth
    )
    assert top_up.status_code == 422, top_up.text
    count = select(func.count(Transaction.id)).where(Transaction.user_id == customer.id)
    assert db.scalar(count) == 0
