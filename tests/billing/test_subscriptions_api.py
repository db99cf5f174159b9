"""The subscription endpoints, and what buying through POST /instances does to them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.billing.models import Subscription, Transaction
from vmcloud.catalog.models import Product
from vmcloud.compute.models import Instance, Node

SUBS = "/api/v1/subscriptions"


def _order(client: TestClient, headers: dict[str, str], plan: Product, cycle: str) -> Any:
    body = {
        "name": "web",
        "product": plan.slug,
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": cycle,
    }
    return client.post("/api/v1/instances", json=body, headers=headers)


def test_buy_list_read_and_cancel(
    client: TestClient, db: Session, node: Node, plan: Product
) -> None:
    headers = bearer(login(client, make_user(db, balance="10.00").username, PASSWORD))
    assert _order(client, headers, plan, "monthly").status_code == 202
    assert _order(client, headers, plan, "hourly").status_code == 202

    listed = client.get(SUBS, headers=headers).json()["items"]
    assert sorted(s["type"] for s in listed) == ["hourly", "monthly"]
    hourly = next(s for s in listed if s["type"] == "hourly")
    assert (hourly["rate"], hourly["accrued"], hourly["monthly_cap"]) == ("0.0074", "0", "4.00")
    monthly = next(s for s in listed if s["type"] == "monthly")
    assert (monthly["price"], monthly["status"], monthly["auto_renew"]) == ("4.00", "active", True)
    assert client.get(f"{SUBS}?status=cancelled", headers=headers).json()["items"] == []

    one = client.get(f"{SUBS}/{monthly['id']}", headers=headers)
    assert one.status_code == 200 and one.json()["instance_id"] == monthly["instance_id"]

    cancelled = client.post(f"{SUBS}/{monthly['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["auto_renew"] is False
    assert cancelled.json()["cancelled_at"] is not None
    again = client.post(f"{SUBS}/{monthly['id']}/cancel", headers=headers)
    assert again.status_code == 409

    charges = client.get("/api/v1/billing/transactions", headers=headers).json()["items"]
    assert [(t["type"], t["amount"]) for t in charges] == [("charge", "4.00"), ("credit", "10.00")]


def test_another_customers_subscription_is_404(
    client: TestClient, db: Session, node: Node, plan: Product
) -> None:
    owner = bearer(login(client, make_user(db, balance="10.00").username, PASSWORD))
    stranger = bearer(login(client, make_user(db).username, PASSWORD))
    _order(client, owner, plan, "monthly")
    sub_id = client.get(SUBS, headers=owner).json()["items"][0]["id"]
    assert client.get(f"{SUBS}/{sub_id}", headers=stranger).status_code == 404
    assert client.post(f"{SUBS}/{sub_id}/cancel", headers=stranger).status_code == 404
    assert client.get(SUBS, headers=stranger).json()["items"] == []
    assert client.get(f"{SUBS}/not-a-uuid", headers=owner).status_code == 422
    assert client.get(SUBS).status_code == 401


def test_a_purchase_without_funds_is_402_and_creates_nothing(
    client: TestClient, db: Session, node: Node, plan: Product
) -> None:
    headers = bearer(login(client, make_user(db, balance="3.99").username, PASSWORD))
    refused = _order(client, headers, plan, "monthly")
    assert refused.status_code == 402
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/insufficient-funds")
    hourly = _order(client, headers, plan, "hourly")  # needs 5.00 on the balance
    assert hourly.status_code == 402
    db.refresh(node)
    assert node.allocated_vcpus == 0
    for model in (Instance, Subscription):
        assert db.scalar(select(func.count()).select_from(model)) == 0
    assert db.scalar(select(func.count()).select_from(Transaction)) == 1  # the funding


def test_an_idempotent_retry_returns_the_first_instance(
    client: TestClient, db: Session, node: Node, plan: Product
) -> None:
    headers = bearer(login(client, make_user(db, balance="10.00").username, PASSWORD))
    keyed = headers | {"Idempotency-Key": "buy-once"}
    first = _order(client, keyed, plan, "monthly")
    second = _order(client, keyed, plan, "monthly")
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert db.scalar(select(func.count()).select_from(Instance)) == 1
    bad = headers | {"Idempotency-Key": "x" * 256}
    assert _order(client, bad, plan, "monthly").status_code == 422
    # A refused request stores nothing: the key can be used again once it can succeed.
    poor = bearer(login(client, make_user(db, balance="1.00").username, PASSWORD))
    poor_keyed = poor | {"Idempotency-Key": "later"}
    assert _order(client, poor_keyed, plan, "monthly").status_code == 402
    assert _order(client, poor_keyed, plan, "monthly").status_code == 402


def test_staff_see_every_subscription_and_the_whole_ledger(
    client: TestClient, db: Session, node: Node, plan: Product
) -> None:
    buyer = make_user(db, balance="10.00")
    other = make_user(db, balance="10.00")
    for user in (buyer, other):
        _order(client, bearer(login(client, user.username, PASSWORD)), plan, "monthly")
    staff = bearer(login(client, make_user(db, role="support").username, PASSWORD))

    mine = client.get(f"/api/v1/admin/subscriptions?user_id={buyer.id}", headers=staff).json()
    assert [s["user_id"] for s in mine["items"]] == [str(buyer.id)]
    assert len(client.get("/api/v1/admin/subscriptions", headers=staff).json()["items"]) == 2
    none = client.get("/api/v1/admin/subscriptions?status=expired", headers=staff).json()
    assert none["items"] == []

    charges = client.get(
        f"/api/v1/admin/transactions?type=charge&user_id={other.id}", headers=staff
    ).json()["items"]
    assert [(t["type"], t["amount"], t["user_id"]) for t in charges] == [
        ("charge", "4.00", str(other.id))
    ]
    assert charges[0]["period_key"].startswith("period:")
    for bad in ("type=gift", "status=done", "user_id=me"):
        assert client.get(f"/api/v1/admin/transactions?{bad}", headers=staff).status_code == 422


def test_staff_can_list_past_due_first(
    client: TestClient, db: Session, node: Node, plan: Product
) -> None:
    buyers = [make_user(db, balance="10.00") for _ in range(3)]
    for user in buyers:
        _order(client, bearer(login(client, user.username, PASSWORD)), plan, "monthly")
    oldest = db.scalar(select(Subscription).where(Subscription.user_id == buyers[0].id))
    assert oldest is not None
    oldest.status = "past_due"
    db.flush()
    staff = bearer(login(client, make_user(db, role="support").username, PASSWORD))
    url = "/api/v1/admin/subscriptions"

    newest = client.get(url, headers=staff).json()["items"]
    assert [s["user_id"] for s in newest] == [str(u.id) for u in reversed(buyers)]
    ordered = client.get(f"{url}?order=past_due_first&limit=2", headers=staff).json()
    assert [s["user_id"] for s in ordered["items"]] == [str(buyers[0].id), str(buyers[2].id)]
    rest = client.get(
        f"{url}?order=past_due_first&limit=2&cursor={ordered['next_cursor']}", headers=staff
    ).json()
    assert [s["user_id"] for s in rest["items"]] == [str(buyers[1].id)]
    # A cursor of the other order does not fit this one.
    other = client.get(f"{url}?limit=1", headers=staff).json()["next_cursor"]
    mixed = client.get(f"{url}?order=past_due_first&cursor={other}", headers=staff)
    assert mixed.status_code == 422
    assert client.get(f"{url}?order=sideways", headers=staff).status_code == 422
