"""The sandbox provider: its checkout page pays or declines through the same signed-webhook
handling a real provider uses, and a payment is credited exactly once."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.billing.payment_support import ledger_clean, set_providers
from tests.factories.accounts import PASSWORD, make_user
from tests.fakes.stripe import signature
from tests.helpers import bearer, login
from vmcloud.audit.models import AuditLog
from vmcloud.billing import dunning
from vmcloud.billing.models import Transaction
from vmcloud.config import Settings
from vmcloud.site_settings import service as site_settings

WEBHOOK = "/api/v1/billing/webhooks/sandbox"
MALFORMED = "/problems/malformed-event"


def top_up(
    client: TestClient, db: Session, amount: str = "20.00"
) -> tuple[Any, dict[str, str], str]:
    user = make_user(db)
    auth = bearer(login(client, user.username, PASSWORD))
    response = client.post(
        "/api/v1/billing/top-ups", json={"amount": amount, "provider": "sandbox"}, headers=auth
    )
    assert response.status_code == 201, response.text
    return user, auth, response.json()["checkout_url"].split("/billing/sandbox/")[1]


def page(provider_id: str) -> str:
    return f"/billing/sandbox/{provider_id}"


def entry_of(db: Session, provider_id: str) -> Transaction:
    entry = db.scalars(
        select(Transaction)
        .where(Transaction.provider_transaction_id == provider_id)
        .execution_options(populate_existing=True)
    ).one()
    return entry


def balance(client: TestClient, auth: dict[str, str]) -> str:
    value: str = client.get("/api/v1/billing/balance", headers=auth).json()["balance"]
    return value


def signed_event(
    settings: Settings, provider_id: str, type_: str, **changes: Any
) -> tuple[bytes, dict[str, str]]:
    event = {
        "id": f"evt_sbx_{uuid.uuid4().hex}",
        "type": type_,
        "created": int(time.time()),
        "data": {"provider_transaction_id": provider_id, "amount": "20.00", "currency": "USD"},
    }
    event["data"].update(changes)  # type: ignore[union-attr]
    payload = json.dumps(event).encode()
    return payload, {"Sandbox-Signature": signature(payload, settings.sandbox_webhook_key)}


def test_the_checkout_page_shows_the_amount_with_pay_and_decline(
    client: TestClient, db: Session
) -> None:
    _, _, provider_id = top_up(client, db, "20.00")
    response = client.get(page(provider_id))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["X-Frame-Options"] == "DENY"
    html = response.text
    assert "20.00 USD" in html
    assert 'name="outcome" value="pay"' in html and 'name="outcome" value="decline"' in html


def test_paying_credits_the_balance_exactly_once(
    client: TestClient, db: Session, app_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled: list[uuid.UUID] = []
    monkeypatch.setattr(
        dunning, "settle_debts", lambda *, db, user_id, now=None: settled.append(user_id)
    )
    user, auth, provider_id = top_up(client, db, "20.00")

    paid = client.post(page(provider_id), data={"outcome": "pay"})
    assert paid.status_code == 200, paid.text
    assert "Payment received" in paid.text and "20.00 USD" in paid.text
    assert balance(client, auth) == "20.00"
    assert entry_of(db, provider_id).status == "completed"
    assert settled == [user.id]  # money came in: past-due subscriptions get their chance

    again = client.post(page(provider_id), data={"outcome": "pay"})
    assert again.status_code == 409
    assert client.get(page(provider_id)).status_code == 409
    # The provider delivering its event again (twice) changes nothing either.
    payload, headers = signed_event(app_settings, provider_id, "payment.succeeded")
    for _ in range(2):
        response = client.post(WEBHOOK, content=payload, headers=headers)
        assert response.status_code == 200 and response.json() == {"received": True}
    assert balance(client, auth) == "20.00"
    assert settled == [user.id]
    entry = entry_of(db, provider_id)
    actions = db.scalars(select(AuditLog.action).where(AuditLog.entity_id == entry.id)).all()
    assert sorted(actions) == ["transaction.payment", "transaction.top_up"]
    assert ledger_clean(db, user.id)


def test_declining_fails_the_payment(client: TestClient, db: Session) -> None:
    user, auth, provider_id = top_up(client, db)
    declined = client.post(page(provider_id), data={"outcome": "decline"})
    assert declined.status_code == 200 and "declined" in declined.text
    assert entry_of(db, provider_id).status == "failed"
    assert client.post(page(provider_id), data={"outcome": "pay"}).status_code == 409
    assert balance(client, auth) == "0.00"
    assert ledger_clean(db, user.id)


def test_a_webhook_succeeded_event_completes_a_sandbox_payment(
    client: TestClient, db: Session, app_settings: Settings
) -> None:
    user, auth, provider_id = top_up(client, db)
    payload, headers = signed_event(app_settings, provider_id, "payment.succeeded")
    assert client.post(WEBHOOK, content=payload, headers=headers).status_code == 200
    assert balance(client, auth) == "20.00"
    assert ledger_clean(db, user.id)


@pytest.mark.parametrize("provider_id", ["sbx_" + "0" * 32, "nope", "sbx_<script>", "x" * 300])
def test_unknown_checkouts_are_404_pages(client: TestClient, provider_id: str) -> None:
    for response in (
        client.get(page(provider_id)),
        client.post(page(provider_id), data={"outcome": "pay"}),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "<script>" not in response.text


def test_a_bad_outcome_changes_nothing(client: TestClient, db: Session) -> None:
    _, auth, provider_id = top_up(client, db)
    for data in ({"outcome": "steal"}, {}):
        assert client.post(page(provider_id), data=data).status_code == 422
    assert entry_of(db, provider_id).status == "pending"
    assert balance(client, auth) == "0.00"


def test_the_page_escapes_what_it_shows(client: TestClient, db: Session) -> None:
    site_settings.update_setting(db=db, key="site.name", value='<script>alert("x")</script>')
    db.commit()
    _, _, provider_id = top_up(client, db)
    html = client.get(page(provider_id)).text
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_switching_the_sandbox_off_closes_its_checkouts(client: TestClient, db: Session) -> None:
    _, auth, provider_id = top_up(client, db)
    set_providers(db, ["stripe", "manual"])
    assert client.get(page(provider_id)).status_code == 404
    assert client.post(page(provider_id), data={"outcome": "pay"}).status_code == 404
    assert balance(client, auth) == "0.00"


def test_sandbox_webhooks_refuse_forged_stale_and_malformed_events(
    client: TestClient, db: Session, app_settings: Settings
) -> None:
    user, auth, provider_id = top_up(client, db)
    payload, headers = signed_event(app_settings, provider_id, "payment.succeeded")
    forged = {"Sandbox-Signature": signature(payload, "not-the-secret")}
    stale = {
        "Sandbox-Signature": signature(
            payload, app_settings.sandbox_webhook_key, int(time.time()) - 301
        )
    }
    tampered = payload.replace(b'"20.00"', b'"2000.00"')
    cases = [
        (payload, forged, "/problems/invalid-signature"),
        (payload, stale, "/problems/invalid-signature"),
        (payload, {}, "/problems/invalid-signature"),
        (payload, {"Sandbox-Signature": "t=abc,v1=zz"}, "/problems/invalid-signature"),
        (
            payload,
            {"Sandbox-Signature": "t=1,v1=\xe9".encode("latin-1")},
            "/problems/invalid-signature",
        ),
        (tampered, headers, "/problems/invalid-signature"),
    ]
    # Signed, but not events this platform could have issued: still a clear 400.
    key = app_settings.sandbox_webhook_key
    for garbage in (b"not json at all", b"[]", b'{"type": "payment.succeeded", "data": {}}'):
        cases.append((garbage, {"Sandbox-Signature": signature(garbage, key)}, MALFORMED))
    for bad_id in ("sbx_\u0000", "x" * 300):
        body, sent = signed_event(app_settings, bad_id, "payment.succeeded")
        cases.append((body, sent, MALFORMED))
    for body, sent, problem in cases:
        response = client.post(WEBHOOK, content=body, headers=sent)
        assert response.status_code == 400, response.text
        assert response.json()["type"] == problem
    assert entry_of(db, provider_id).status == "pending"
    assert balance(client, auth) == "0.00"
    assert ledger_clean(db, user.id)


def test_unknown_payments_and_providers(
    client: TestClient, db: Session, app_settings: Settings
) -> None:
    payload, headers = signed_event(app_settings, "sbx_" + "1" * 32, "payment.succeeded")
    assert client.post(WEBHOOK, content=payload, headers=headers).status_code == 200
    ignored, headers = signed_event(app_settings, "sbx_" + "1" * 32, "payment.refunded")
    assert client.post(WEBHOOK, content=ignored, headers=headers).status_code == 200
    for name in ("manual", "paypal", "x" * 200):
        response = client.post(f"/api/v1/billing/webhooks/{name}", content=b"{}")
        assert response.status_code == 404
        assert response.json()["type"] == "/problems/not-found"
    too_big = client.post(WEBHOOK, content=b"x" * (300 * 1024))
    assert too_big.status_code == 413
    unknown = select(func.count()).where(Transaction.provider_transaction_id == "sbx_" + "1" * 32)
    assert db.scalar(unknown) == 0
