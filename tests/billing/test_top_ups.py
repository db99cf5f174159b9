"""POST /billing/top-ups: limits, providers, verified customers, Stripe Checkout, and the
Idempotency-Key header (replays, conflicts, concurrent duplicates)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.billing.payment_support import entries_of, ledger_clean, set_providers, stripe_client
from tests.factories.accounts import PASSWORD, make_user
from tests.fakes.stripe import STRIPE_API_KEY, fake_stripe
from tests.helpers import bearer, login
from vmcloud.app import create_app
from vmcloud.billing.models import Transaction
from vmcloud.config import Settings
from vmcloud.db.session import make_engine
from vmcloud.site_settings import service as site_settings

URL = "/api/v1/billing/top-ups"


def customer(client: TestClient, db: Session, **options: Any) -> tuple[Any, dict[str, str]]:
    user = make_user(db, **options)
    return user, bearer(login(client, user.username, PASSWORD))


def test_a_top_up_is_a_pending_payment_with_a_checkout_url(
    client: TestClient, db: Session, app_settings: Settings
) -> None:
    user, auth = customer(client, db)
    response = client.post(URL, json={"amount": "25.00", "provider": "sandbox"}, headers=auth)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["type"] == "payment" and body["status"] == "pending"
    assert body["amount"] == "25.00" and body["currency"] == "USD"
    assert body["payment_provider"] == "sandbox" and body["payment_method"] == "sandbox"
    prefix = f"{app_settings.public_url}/billing/sandbox/sbx_"
    assert body["checkout_url"].startswith(prefix)
    entry = db.get(Transaction, uuid.UUID(body["id"]))
    assert entry is not None and entry.user_id == user.id
    assert entry.provider_transaction_id == body["checkout_url"].rsplit("/", 1)[1]
    assert len(entry.provider_transaction_id) == len("sbx_") + 32
    # Nothing is credited before the provider confirms.
    assert client.get("/api/v1/billing/balance", headers=auth).json()["balance"] == "0.00"
    assert ledger_clean(db, user.id)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": "4.99", "provider": "sandbox"}, "amount"),  # below billing.topup_min
        ({"amount": "1000.01", "provider": "sandbox"}, "amount"),  # above billing.topup_max
        ({"amount": "0", "provider": "sandbox"}, "amount"),
        ({"amount": "25.001", "provider": "sandbox"}, "amount"),
        ({"amount": 25, "provider": "sandbox"}, "amount"),  # JSON numbers are refused
        ({"amount": "-5", "provider": "sandbox"}, "amount"),
        ({"amount": "25.00", "provider": "manual"}, "provider"),  # staff only
        ({"amount": "25.00", "provider": "stripe"}, "provider"),  # not enabled
        ({"amount": "25.00", "provider": "paypal"}, "provider"),
        ({"amount": "25.00"}, "provider"),
        ({"amount": "25.00", "provider": "sandbox", "user_id": "x"}, "user_id"),
    ],
)
def test_bad_top_ups_are_422_and_write_nothing(
    client: TestClient, db: Session, body: dict[str, Any], field: str
) -> None:
    user, auth = customer(client, db)
    response = client.post(URL, json=body, headers=auth)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "/problems/validation"
    assert field in {e["field"] for e in problem["errors"]}
    assert entries_of(db, user.id) == 0


def test_limits_come_from_the_site_settings(client: TestClient, db: Session) -> None:
    user, auth = customer(client, db)
    site_settings.update_setting(db=db, key="billing.topup_max", value="2000")
    site_settings.update_setting(db=db, key="billing.topup_min", value="50")
    db.commit()
    small = client.post(URL, json={"amount": "25.00", "provider": "sandbox"}, headers=auth)
    assert small.status_code == 422 and "50.00" in small.json()["detail"]
    large = client.post(URL, json={"amount": "1500.00", "provider": "sandbox"}, headers=auth)
    assert large.status_code == 201
    assert entries_of(db, user.id) == 1


def test_unverified_and_anonymous_callers_cannot_top_up(client: TestClient, db: Session) -> None:
    user, auth = customer(client, db, email_verified=False)
    body = {"amount": "25.00", "provider": "sandbox"}
    response = client.post(URL, json=body, headers=auth)
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/email-unverified"
    assert client.post(URL, json=body).status_code == 401
    assert entries_of(db, user.id) == 0


def test_stripe_checkout_is_created_at_stripe(
    app_settings: Settings, engine: Engine, session_factory: sessionmaker[Session], db: Session
) -> None:
    set_providers(db, ["sandbox", "stripe", "manual"])
    with fake_stripe() as fake, stripe_client(app_settings, engine, session_factory, fake) as c:
        user, auth = customer(c, db)
        response = c.post(URL, json={"amount": "12.50", "provider": "stripe"}, headers=auth)
        assert response.status_code == 201, response.text
        body = response.json()
        [call] = fake.requests
    assert call.path == "/v1/checkout/sessions"
    assert call.headers["Authorization"] == f"Bearer {STRIPE_API_KEY}"
    assert call.headers["Idempotency-Key"] == f"vmcloud-checkout-{body['id']}"
    form = call.form
    assert form["mode"] == "payment"
    assert form["line_items[0][price_data][unit_amount]"] == "1250"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["line_items[0][quantity]"] == "1"
    assert form["client_reference_id"] == body["id"]
    assert form["metadata[transaction_id]"] == body["id"]
    assert form["customer_email"] == user.email
    assert "top_up=success" in form["success_url"] and "top_up=cancelled" in form["cancel_url"]
    assert body["checkout_url"] == "https://checkout.stripe.test/c/pay/cs_test_1"
    assert body["payment_provider"] == "stripe" and body["payment_method"] == "card"
    entry = db.get(Transaction, uuid.UUID(body["id"]))
    assert entry is not None and entry.provider_transaction_id == "cs_test_1"
    assert entry.status == "pending" and entry.amount == Decimal("12.50")


def test_a_stripe_failure_is_a_502_and_writes_nothing(
    app_settings: Settings, engine: Engine, session_factory: sessionmaker[Session], db: Session
) -> None:
    set_providers(db, ["stripe"])
    with fake_stripe() as fake, stripe_client(app_settings, engine, session_factory, fake) as c:
        fake.fail = True
        user, auth = customer(c, db)
        response = c.post(URL, json={"amount": "12.50", "provider": "stripe"}, headers=auth)
    assert response.status_code == 502
    assert response.json()["type"] == "/problems/payment-provider-error"
    assert STRIPE_API_KEY not in response.text
    assert entries_of(db, user.id) == 0


def test_stripe_without_keys_is_503(client: TestClient, db: Session) -> None:
    set_providers(db, ["stripe"])
    user, auth = customer(client, db)
    response = client.post(URL, json={"amount": "12.50", "provider": "stripe"}, headers=auth)
    assert response.status_code == 503
    assert entries_of(db, user.id) == 0


def test_the_same_idempotency_key_replays_the_first_response(
    client: TestClient, db: Session
) -> None:
    user, auth = customer(client, db)
    headers = {**auth, "Idempotency-Key": "top-up-1"}
    body = {"amount": "30.00", "provider": "sandbox"}
    first = client.post(URL, json=body, headers=headers)
    second = client.post(URL, json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert entries_of(db, user.id) == 1
    other = client.post(URL, json={"amount": "31.00", "provider": "sandbox"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["type"] == "/problems/idempotency-key-reused"
    assert entries_of(db, user.id) == 1
    # A failed request stores nothing: the key can be used once the input is fixed.
    bad = {**auth, "Idempotency-Key": "top-up-2"}
    assert (
        client.post(URL, json={"amount": "1.00", "provider": "sandbox"}, headers=bad).status_code
        == 422
    )
    assert client.post(URL, json=body, headers=bad).status_code == 201
    assert entries_of(db, user.id) == 2


def test_twenty_concurrent_retries_make_one_top_up(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    own = settings.model_copy(
        update={
            "database_url": fresh_database_url,
            "data_dir": tmp_path,
            "rate_limit_namespace": f"i{uuid.uuid4().hex[:8]}:",
            "db_pool_size": 25,
        }
    )
    engine = make_engine(own)
    try:
        with Session(engine) as db:
            user = make_user(db)
            db.commit()
            user_id = user.id
        app = create_app(own, engine=engine)
        with TestClient(app, client=("198.51.100.98", 50000)) as client:
            headers = {**bearer(login(client, user.username, PASSWORD)), "Idempotency-Key": "k-1"}

            def post(_: int) -> tuple[int, str]:
                r = client.post(
                    URL, json={"amount": "40.00", "provider": "sandbox"}, headers=headers
                )
                return r.status_code, r.json()["id"]

            with ThreadPoolExecutor(max_workers=20) as pool:
                results = list(pool.map(post, range(20)))
        assert {status for status, _ in results} == {201}
        assert len({entry_id for _, entry_id in results}) == 1
        with Session(engine) as db:
            count = db.scalar(select(func.count()).where(Transaction.user_id == user_id))
            assert count == 1
            assert ledger_clean(db, user_id)
    finally:
        engine.dispose()
