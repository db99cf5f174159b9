"""The ledger rule: every balance change is one entry, balances never go below zero, and
`vmcloud billing verify` catches any drift."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.accounts.models import User
from vmcloud.billing import ledger
from vmcloud.billing.models import Transaction
from vmcloud.cli import app as cli_app
from vmcloud.config import Settings
from vmcloud.core.errors import InvalidInputError
from vmcloud.db.session import make_engine

AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500"), places=2)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["payment", "credit", "refund", "charge", "debit"]), AMOUNTS),
        max_size=25,
    )
)
def test_balance_always_equals_the_ledger_and_never_goes_negative(
    db: Session, steps: list[tuple[str, Decimal]]
) -> None:
    user = make_user(db)
    expected = Decimal("0.00")
    for type_, amount in steps:
        adds = type_ in ledger.ADDS
        if not adds and amount > expected:
            with pytest.raises(ledger.InsufficientFundsError), db.begin_nested():
                ledger.post(db=db, user_id=user.id, type_=type_, amount=amount, currency="USD")
            continue
        ledger.post(db=db, user_id=user.id, type_=type_, amount=amount, currency="USD")
        expected += amount if adds else -amount
        db.refresh(user)
        assert user.balance == expected
        assert user.balance >= 0
    assert [m for m in ledger.verify(db=db) if m.user_id == user.id] == []


@pytest.mark.parametrize("amount", ["0", "-1", "0.001", "NaN", "100000000"])
def test_bad_amounts_are_refused(db: Session, amount: str) -> None:
    user = make_user(db)
    with pytest.raises(InvalidInputError):
        ledger.post(db=db, user_id=user.id, type_="credit", amount=Decimal(amount), currency="USD")


def test_the_database_refuses_a_negative_balance_and_amount(db: Session) -> None:
    user = make_user(db)
    with pytest.raises(IntegrityError), db.begin_nested():
        db.execute(update(User).where(User.id == user.id).values(balance=Decimal("-0.01")))
    nested = db.begin_nested()
    db.add(Transaction(user_id=user.id, amount=Decimal("-5"), type="credit"))
    with pytest.raises(IntegrityError):
        db.flush()
    nested.rollback()


def test_a_pending_payment_counts_once_when_completed(db: Session) -> None:
    user = make_user(db)
    entry = ledger.post(
        db=db, user_id=user.id, type_="payment", amount=Decimal("20"), currency="USD",
        status="pending", payment_provider="sandbox", provider_transaction_id="p-1",
    )  # fmt: skip
    db.refresh(user)
    assert user.balance == 0  # pending entries do not count
    ledger.complete(db=db, entry_id=entry.id)
    ledger.complete(db=db, entry_id=entry.id)  # a replayed confirmation changes nothing
    db.refresh(user)
    assert user.balance == Decimal("20.00")
    with pytest.raises(IntegrityError), db.begin_nested():  # one entry per provider id
        ledger.post(
            db=db, user_id=user.id, type_="payment", amount=Decimal("20"), currency="USD",
            status="pending", payment_provider="sandbox", provider_transaction_id="p-1",
        )  # fmt: skip


def test_concurrent_debits_never_overdraw(settings: Settings, fresh_database_url: str) -> None:
    engine = make_engine(settings, fresh_database_url)
    try:
        with Session(engine) as db:
            user = make_user(db)
            ledger.post(
                db=db, user_id=user.id, type_="credit", amount=Decimal("10"), currency="USD"
            )
            db.commit()
            user_id = user.id

        def debit(_: int) -> bool:
            with Session(engine) as db:
                try:
                    ledger.post(
                        db=db, user_id=user_id, type_="charge", amount=Decimal("1"), currency="USD"
                    )
                    db.commit()
                    return True
                except ledger.InsufficientFundsError:
                    db.rollback()
                    return False

        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(debit, range(30)))
        assert results.count(True) == 10
        with Session(engine) as db:
            assert db.get(User, user_id).balance == 0  # type: ignore[union-attr]
            assert ledger.verify(db=db) == []
    finally:
        engine.dispose()


def test_verify_command_reports_drift(
    clean_env: pytest.MonkeyPatch, settings: Settings, fresh_database_url: str
) -> None:
    clean_env.setenv("DATABASE_URL", fresh_database_url)
    engine = make_engine(settings, fresh_database_url)
    try:
        with Session(engine) as db:
            user = make_user(db)
            ledger.post(db=db, user_id=user.id, type_="credit", amount=Decimal("7"), currency="USD")
            db.commit()
            good = CliRunner().invoke(cli_app, ["billing", "verify"])
            assert good.exit_code == 0, good.output
            # Someone changes a balance behind the ledger's back.
            db.execute(update(User).where(User.id == user.id).values(balance=Decimal("70")))
            db.commit()
            bad = CliRunner().invoke(cli_app, ["billing", "verify"])
            assert bad.exit_code == 1
            assert str(user.id) in bad.output and "70.00" in bad.output
    finally:
        engine.dispose()


def test_balance_transactions_and_admin_credit_through_the_api(
    client,
    db: Session,  # type: ignore[no-untyped-def]
) -> None:
    customer = make_user(db)
    admin = make_user(db, role="admin")
    mine = bearer(login(client, customer.username, PASSWORD))
    staff = bearer(login(client, admin.username, PASSWORD))
    assert client.get("/api/v1/billing/balance", headers=mine).json() == {
        "balance": "0.00",
        "currency": "USD",
    }
    url = f"/api/v1/admin/users/{customer.id}/credits"
    for bad in ({"amount": 5, "reason": "x"}, {"amount": "5.001", "reason": "x"}, {"amount": "5"}):
        assert client.post(url, json=bad, headers=staff).status_code == 422
    assert client.post(url, json={"amount": "5", "reason": "x"}, headers=mine).status_code == 403
    missing = f"/api/v1/admin/users/{uuid.uuid4()}/credits"
    assert (
        client.post(missing, json={"amount": "5", "reason": "x"}, headers=staff).status_code == 404
    )
    first = client.post(url, json={"amount": "12.50", "reason": "outage"}, headers=staff)
    assert first.status_code == 201
    assert first.json()["amount"] == "12.50" and first.json()["type"] == "credit"
    client.post(url, json={"amount": "0.50", "reason": "more"}, headers=staff)
    assert client.get("/api/v1/billing/balance", headers=mine).json()["balance"] == "13.00"
    items = client.get("/api/v1/billing/transactions", headers=mine).json()["items"]
    assert [i["amount"] for i in items] == ["0.50", "12.50"]  # newest first
    others = client.get("/api/v1/billing/transactions", headers=staff).json()["items"]
    assert others == []  # an admin's own ledger, not the customer's


def test_an_admin_credit_with_an_idempotency_key_happens_once(
    client,
    db: Session,  # type: ignore[no-untyped-def]
) -> None:
    customer = make_user(db)
    staff = bearer(login(client, make_user(db, role="admin").username, PASSWORD))
    url = f"/api/v1/admin/users/{customer.id}/credits"
    keyed = staff | {"Idempotency-Key": "goodwill-42"}
    first = client.post(url, json={"amount": "7.00", "reason": "outage"}, headers=keyed)
    again = client.post(url, json={"amount": "7.00", "reason": "outage"}, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["id"] == again.json()["id"]
    other = client.post(url, json={"amount": "8.00", "reason": "outage"}, headers=keyed)
    assert other.status_code == 409
    db.refresh(customer)
    assert customer.balance == Decimal("7.00")
