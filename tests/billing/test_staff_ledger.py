"""The staff ledger's filters (provider, dates) and its totals: the sums of exactly the rows
the filter lists, over all pages, by type and status."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.billing import pending_payment
from tests.helpers import bearer, login
from vmcloud.billing import ledger, service
from vmcloud.billing.models import Transaction
from vmcloud.core.clock import utcnow
from vmcloud.core.pagination import PageParams


def test_totals_sum_every_filtered_row_by_type_and_status(db: Session) -> None:
    user = make_user(db, balance="30")  # a completed credit of 30.00
    other = make_user(db, balance="7")
    ledger.post(db=db, user_id=user.id, type_="charge", amount=Decimal("4.25"), currency="USD")
    ledger.post(db=db, user_id=user.id, type_="charge", amount=Decimal("0.75"), currency="USD")
    pending_payment(db, user.id, "sandbox", "sbx_1", amount="12.00")

    totals = service.ledger_totals(db=db, user_id=user.id)
    by_key = {(t.type, t.status): (t.count, t.amount) for t in totals}
    assert by_key == {
        ("charge", "completed"): (2, Decimal("5.00")),
        ("credit", "completed"): (1, Decimal("30.00")),
        ("payment", "pending"): (1, Decimal("12.00")),
    }
    # What the rows did to the balance: completed entries only.
    assert sum(t.signed for t in totals) == Decimal("25.00")
    db.refresh(user)
    assert user.balance == Decimal("25.00")
    assert other.id not in {e.user_id for e in _all(db, user_id=user.id)}


def _all(db: Session, **filters: object) -> list[Transaction]:
    items, _ = service.list_all_transactions(db=db, params=PageParams(limit=200), **filters)  # type: ignore[arg-type]
    return items


def test_provider_and_dates_filter_the_list_and_the_totals_alike(db: Session) -> None:
    user = make_user(db)
    old = pending_payment(db, user.id, "sandbox", "sbx_old", amount="5.00")
    new = pending_payment(db, user.id, "stripe", "cs_new", amount="8.00")
    week_ago = utcnow() - timedelta(days=7)
    db.execute(update(Transaction).where(Transaction.id == old.id).values(created_at=week_ago))
    db.expire_all()

    assert [e.id for e in _all(db, user_id=user.id, provider="stripe")] == [new.id]
    since = utcnow() - timedelta(days=1)
    assert [e.id for e in _all(db, user_id=user.id, since=since)] == [new.id]
    assert [e.id for e in _all(db, user_id=user.id, until=since)] == [old.id]
    totals = service.ledger_totals(db=db, user_id=user.id, until=since)
    assert [(t.type, t.count, t.amount) for t in totals] == [("payment", 1, Decimal("5.00"))]


def test_the_api_filters_by_provider_and_dates(client: TestClient, db: Session) -> None:
    user = make_user(db)
    pending_payment(db, user.id, "sandbox", "sbx_a", amount="5.00")
    stripe = pending_payment(db, user.id, "stripe", "cs_b", amount="8.00")
    admin = make_user(db, role="admin")
    auth = bearer(login(client, admin.username, PASSWORD))
    params = {"user_id": str(user.id), "provider": "stripe", "since": "2020-01-01T00:00:00Z"}
    answer = client.get("/api/v1/admin/transactions", params=params, headers=auth)
    assert answer.status_code == 200, answer.text
    assert [item["id"] for item in answer.json()["items"]] == [str(stripe.id)]
    params["until"] = "2020-01-02T00:00:00Z"
    answer = client.get("/api/v1/admin/transactions", params=params, headers=auth)
    assert answer.json()["items"] == []
    bad = client.get("/api/v1/admin/transactions", params={"since": "soon"}, headers=auth)
    assert bad.status_code == 422
