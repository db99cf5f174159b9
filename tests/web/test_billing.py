"""The billing pages (``/billing``, top-up, CSV, ``/billing/subscriptions``) through the real
app: the same balance, ledger and subscriptions as the API, the same services behind forms,
and other customers' ids as 404."""

from __future__ import annotations

import csv
import io
import re
import uuid
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.billing.conftest import Buy
from tests.billing.payment_support import set_providers
from tests.factories.accounts import PASSWORD, fund, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from tests.fakes.stripe import STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET, fake_stripe
from tests.helpers import bearer, login
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts.models import User
from vmcloud.app import create_app
from vmcloud.billing import flows, ledger
from vmcloud.billing.models import Subscription, Transaction
from vmcloud.compute.models import Instance
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.config import Settings
from vmcloud.site_settings import service as site_settings
from vmcloud.web.customer import billing as billing_page
from vmcloud.web.customer import billing_subscriptions

ENTRY_ROW = re.compile(r'data-entry="([0-9a-f-]{36})"')


@pytest.fixture
def buy(db: Session) -> Buy:
    """Order an instance as the API does (a fake node; 0.0074/hour, capped at 4.00 a month)."""
    make_node(db, vcpus=64, memory_mb=65536, disk_gb=1000)
    make_pool(db, "198.18.64.0/24")
    plan = make_product(
        db,
        slug="panel-tiny",
        specs_json={"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
        pricing_json={"hourly": "0.0074", "monthly": "4.00", "yearly": "40.00"},
    )

    def order(user: User, cycle: str = "monthly", name: str = "vm") -> Instance:
        body = InstanceCreate(
            name=name, product=plan.slug, region="local", image="tiny-linux", billing_cycle=cycle
        )
        instance = flows.order_instance(db=db, owner=user, body=body)
        db.flush()
        return instance

    return order


def customer(panel: TestClient, db: Session, **options: object) -> User:
    user = make_user(db, **options)  # type: ignore[arg-type]
    db.commit()
    log_in(panel, user.username, PASSWORD)
    return user


def api_auth(panel: TestClient, user: User) -> dict[str, str]:
    return bearer(login(panel, user.username, PASSWORD))


def test_balance_and_ledger_are_the_apis(panel: TestClient, db: Session) -> None:
    user = customer(panel, db, balance="12.34")
    for n in range(55):  # more than a page
        fund(db, user, Decimal("0.01") * (n + 1))
    db.commit()
    auth = api_auth(panel, user)
    api_balance = panel.get("/api/v1/billing/balance", headers=auth).json()
    api_page = panel.get("/api/v1/billing/transactions", headers=auth).json()

    page = panel.get("/billing")
    assert page.status_code == 200
    assert f'id="balance">{api_balance["balance"]} USD<' in page.text.replace(",", "")
    shown = ENTRY_ROW.findall(page.text)
    assert shown == [item["id"] for item in api_page["items"]]

    cursor = api_page["next_cursor"]
    assert cursor and f"/billing?cursor={cursor}" in page.text.replace("&#34;", '"')
    older = panel.get("/billing", params={"cursor": cursor})
    api_older = panel.get(
        "/api/v1/billing/transactions", params={"cursor": cursor}, headers=auth
    ).json()
    assert ENTRY_ROW.findall(older.text) == [item["id"] for item in api_older["items"]]
    assert panel.get("/billing", params={"cursor": "garbage"}).status_code == 422


def test_the_billing_page_needs_a_login(panel: TestClient) -> None:
    answer = panel.get("/billing")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert panel.get("/billing/transactions.csv").status_code == 303


def test_low_balance_warning_and_runway(panel: TestClient, db: Session, buy: Buy) -> None:
    site_settings.update_setting(db=db, key="billing.low_balance_warning", value="10.00")
    user = customer(panel, db, balance="14.00")
    buy(user, "hourly")  # 0.0074/hour (0.1776 a day), capped at 4.00 a month: 0.1315 a day
    db.commit()
    page = panel.get("/billing").text
    assert 'id="low-balance"' not in page
    assert runway_of(page) == "At current usage (0.13 USD a day) your balance lasts ~106 days."
    ledger.post(db=db, user_id=user.id, type_="debit", amount=Decimal("5"), currency="USD")
    db.commit()
    assert 'id="low-balance"' in panel.get("/billing").text


def runway_of(page: str) -> str:
    found = re.search(r'<p[^>]*id="runway">(.*?)</p>', page, re.S)
    assert found, page
    return " ".join(found.group(1).split())


def test_csv_has_the_apis_rows_and_is_formula_safe(panel: TestClient, db: Session) -> None:
    user = customer(panel, db)
    ledger.post(
        db=db,
        user_id=user.id,
        type_="credit",
        amount=Decimal("3.00"),
        currency="USD",
        payment_method='=HYPERLINK("http://x")',
        metadata={"reason": "+1 goodwill"},
    )
    fund(db, user, "2.00")
    db.commit()
    answer = panel.get("/billing/transactions.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    api = panel.get("/api/v1/billing/transactions", headers=api_auth(panel, user)).json()
    assert [r["id"] for r in rows] == [item["id"] for item in api["items"]]
    assert [r["amount"] for r in rows] == ["2.00", "3.00"]
    formula = rows[1]
    assert formula["payment_method"] == '\'=HYPERLINK("http://x")'
    assert formula["metadata_json"] == '{"reason": "+1 goodwill"}'
    assert not any(v.startswith(("=", "+", "-", "@")) for r in rows for v in r.values())


def top_up(panel: TestClient, amount: str, provider: str = "sandbox", nonce: str = "n1"):  # type: ignore[no-untyped-def]
    token = csrf_of(panel.get("/billing/top-up").text)
    data = {"amount": amount, "provider": provider, "nonce": nonce, "csrftoken": token}
    return panel.post("/billing/top-up", data=data)


def test_top_up_limits_are_shown_next_to_the_amount(panel: TestClient, db: Session) -> None:
    user = customer(panel, db)
    for amount in ("4.99", "1000.01", "abc", "1.001"):
        answer = top_up(panel, amount, nonce=uuid.uuid4().hex)
        assert answer.status_code == 422, amount
        assert 'id="e-amount"' in answer.text and 'aria-invalid="true"' in answer.text
    assert "between 5.00 and 1000.00" in top_up(panel, "4.99", nonce="x").text
    assert "one of: sandbox" in top_up(panel, "20.00", provider="paypal", nonce="y").text
    assert db.scalars(select(Transaction).where(Transaction.user_id == user.id)).all() == []


def test_a_top_up_is_pending_and_leads_to_the_sandbox_once(panel: TestClient, db: Session) -> None:
    user = customer(panel, db)
    answer = top_up(panel, "20.00", nonce="same")
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert re.fullmatch(r"/billing/sandbox/sbx_[0-9a-f]{32}", location)
    again = top_up(panel, "20.00", nonce="same")  # a double submit
    assert again.headers["location"] == location
    entries = db.scalars(select(Transaction).where(Transaction.user_id == user.id)).all()
    assert [(e.type, e.status, e.amount) for e in entries] == [
        ("payment", "pending", Decimal("20.00"))
    ]
    page = panel.get("/billing").text
    assert f'id="top-up-{entries[0].id}"' in page and "pending" in page
    resume = panel.get(f"/billing/top-ups/{entries[0].id}/checkout")
    assert resume.status_code == 303 and resume.headers["location"] == location
    # Paid in the sandbox: the balance shows it, and the sandbox leads back to billing.
    paid = panel.post(location, data={"outcome": "pay"})
    assert paid.status_code == 200 and 'href="/billing"' in paid.text
    assert 'id="balance">20.00 USD<' in panel.get("/billing").text


def test_a_tampered_nonce_is_a_400_and_changes_nothing(panel: TestClient, db: Session) -> None:
    user = customer(panel, db)
    for nonce in ("a\x00b", "", "x" * 201):
        answer = top_up(panel, "20.00", nonce=nonce)
        assert answer.status_code == 400, nonce
        assert "form expired" in answer.text
    assert db.scalars(select(Transaction).where(Transaction.user_id == user.id)).all() == []


def test_hourly_subscriptions_show_their_exact_rate(
    panel: TestClient, db: Session, buy: Buy
) -> None:
    user = customer(panel, db, balance="5.00")
    buy(user, "hourly")
    db.commit()
    page = panel.get("/billing/subscriptions").text
    assert "0.0074 USD/h" in page and "0.01 USD/h" not in page


def test_unverified_customers_cannot_top_up(panel: TestClient, db: Session) -> None:
    customer(panel, db, email_verified=False)
    answer = top_up(panel, "20.00")
    assert answer.status_code == 403 and "Confirm your email" in answer.text


def test_other_customers_top_ups_and_subscriptions_are_404(
    panel: TestClient, db: Session, buy: Buy
) -> None:
    other = make_user(db, balance="50.00")
    buy(other, "monthly")
    theirs = db.scalars(select(Subscription).where(Subscription.user_id == other.id)).one()
    payment = ledger.post(
        db=db,
        user_id=other.id,
        type_="payment",
        amount=Decimal("9"),
        currency="USD",
        status="pending",
        metadata={"checkout_url": "https://pay.example/x"},
    )
    customer(panel, db)
    assert panel.get(f"/billing/top-ups/{payment.id}/checkout").status_code == 404
    token = csrf_of(panel.get("/billing/subscriptions").text)
    url = f"/billing/subscriptions/{theirs.id}/cancel"
    assert panel.post(url, data={"csrftoken": token}).status_code == 404
    db.refresh(theirs)
    assert theirs.auto_renew is True
    assert (
        panel.post("/billing/subscriptions/nope/cancel", data={"csrftoken": token}).status_code
        == 422
    )


def test_cancel_renewal_uses_the_apis_flow(panel: TestClient, db: Session, buy: Buy) -> None:
    user = customer(panel, db, balance="50.00")
    instance = buy(user, "monthly", name="web-1")
    db.commit()
    sub = db.scalars(select(Subscription).where(Subscription.user_id == user.id)).one()
    page = panel.get("/billing/subscriptions")
    assert "web-1" in page.text and "Cancel renewal" in page.text
    api = panel.get("/api/v1/subscriptions", headers=api_auth(panel, user)).json()
    assert [item["id"] for item in api["items"]] == [str(sub.id)]
    token = csrf_of(page.text)
    answer = panel.post(f"/billing/subscriptions/{sub.id}/cancel", data={"csrftoken": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/billing/subscriptions"
    db.refresh(sub)
    assert sub.auto_renew is False and sub.status == "active"
    assert instance.id
    shown = panel.get("/billing/subscriptions").text
    assert "Renewal cancelled: web-1 runs until" in shown and "Cancel renewal" not in shown
    again = panel.post(f"/billing/subscriptions/{sub.id}/cancel", data={"csrftoken": token})
    assert again.status_code == 409 and "already cancelled" in again.text


def test_ending_a_past_due_subscription_needs_the_name(
    panel: TestClient, db: Session, buy: Buy
) -> None:
    user = customer(panel, db, balance="4.00")
    buy(user, "monthly", name="web-2")
    sub = db.scalars(select(Subscription).where(Subscription.user_id == user.id)).one()
    sub.status, sub.amount_due, sub.past_due_since = "past_due", Decimal("4.00"), sub.period_end
    db.commit()
    page = panel.get("/billing/subscriptions")
    assert "past due" in page.text and "ends unpaid" in page.text
    token = csrf_of(page.text)
    url = f"/billing/subscriptions/{sub.id}/cancel"
    refused = panel.post(url, data={"csrftoken": token, "confirm": "web"})
    assert refused.status_code == 422 and "Type the instance" in refused.text
    db.refresh(sub)
    assert sub.status == "past_due"
    done = panel.post(url, data={"csrftoken": token, "confirm": "web-2"})
    assert done.status_code == 303
    db.refresh(sub)
    assert sub.status == "cancelled"


def test_the_live_stream_renders_the_pages_parts_out_of_band(
    panel: TestClient, db: Session
) -> None:
    user = customer(panel, db, balance="3.00")
    raw = panel.cookies.get("__Host-vmc_session")
    html = billing_page.live_parts(db, raw, None) or ""
    for part in ("billing-summary", "top-ups", "month-spend", "ledger"):
        assert f'<section id="{part}"' in html
    assert html.count('hx-swap-oob="true"') == 4
    assert 'id="balance">3.00 USD<' in html
    fund(db, user, "1.00")
    assert 'id="balance">4.00 USD<' in (billing_page.live_parts(db, raw, None) or "")
    assert billing_page.live_parts(db, "not-a-session", None) is None
    assert billing_page.live_parts(db, raw, "bad-cursor") is None


def test_live_subscription_rows_keep_the_pages_csrf_token(
    panel: TestClient, db: Session, buy: Buy
) -> None:
    user = customer(panel, db, balance="10.00")
    buy(user, "monthly")
    raw = panel.cookies.get("__Host-vmc_session")
    token = csrf_of(panel.get("/billing/subscriptions").text)
    html = billing_subscriptions.live_subscriptions(db, raw, None, token) or ""
    assert '<section id="subscriptions"' in html and 'hx-swap-oob="true"' in html
    assert csrf_of(html) == token


def test_a_stripe_top_up_leads_to_a_page_with_the_checkout_link(
    app_settings: Settings, engine: Engine, session_factory: sessionmaker[Session], db: Session
) -> None:
    set_providers(db, ["sandbox", "stripe"])
    with fake_stripe() as fake:
        settings = app_settings.model_copy(
            update={
                "stripe_secret_key": SecretStr(STRIPE_API_KEY),
                "stripe_webhook_secret": SecretStr(STRIPE_WEBHOOK_SECRET),
                "stripe_api_base": fake.url,
            }
        )
        app = create_app(settings, engine=engine, session_factory=session_factory)
        with TestClient(app, base_url="https://testserver", follow_redirects=False) as panel:
            customer(panel, db)
            answer = top_up(panel, "12.50", provider="stripe")
            back = panel.get("/billing", params={"top_up": "success"})
    # Not a redirect: the form's CSP (form-action 'self') would stop one to another site.
    assert answer.status_code == 200
    assert 'href="https://checkout.stripe.test/c/pay/cs_test_1"' in answer.text
    assert fake.requests[0].form["success_url"].startswith(f"{settings.public_url}/billing?")
    assert 'id="top-up-return"' in back.text and "as soon as the provider confirms" in back.text
