"""The staff ledger page (``/admin/transactions``): filters and totals, a user's balance
against their ledger, CSV, and the admin's refund of one entry (partial, at most what is
left, once per form, the API's audit row)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.billing import pending_payment
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts.models import User
from vmcloud.audit.models import AuditLog
from vmcloud.billing import ledger
from vmcloud.billing.models import Transaction

PAGE = "/admin/transactions"


def completed_top_up(db: Session, user: User, amount: str = "20.00") -> Transaction:
    entry = pending_payment(db, user.id, "sandbox", f"sbx_{user.id.hex[:12]}", amount=amount)
    done = ledger.complete(db=db, entry_id=entry.id)
    assert done is not None
    return done


def signed_in(panel: TestClient, db: Session, role: str) -> User:
    staff = make_user(db, role=role)
    log_in(panel, staff.username, PASSWORD)
    return staff


def refunds_of(db: Session, entry: Transaction) -> list[Transaction]:
    return list(db.scalars(select(Transaction).where(Transaction.refund_of == entry.id)))


def test_the_list_filters_by_user_and_type_and_totals_every_filtered_row(
    panel: TestClient, db: Session
) -> None:
    customer = make_user(db, balance="30", email="payer@example.com")
    ledger.post(db=db, user_id=customer.id, type_="charge", amount=Decimal("4.50"), currency="USD")
    other = make_user(db, balance="9")
    signed_in(panel, db, "support")

    page = panel.get(PAGE, params={"user": "PAYER@example.com"})
    assert page.status_code == 200, page.text
    assert page.text.count('data-entry="') == 2
    assert 'data-total="credit-completed"' in page.text
    assert 'data-total="charge-completed"' in page.text
    assert "+25.50 USD" in page.text  # net: 30.00 in, 4.50 out
    assert "the sum of their completed entries agrees" in page.text
    assert str(other.id) not in page.text

    charges = panel.get(PAGE, params={"user": str(customer.id), "type": "charge"})
    assert charges.text.count('data-entry="') == 1
    assert 'data-total="credit-completed"' not in charges.text


def test_bad_filters_are_422_with_a_message_per_field_and_list_nothing(
    panel: TestClient, db: Session
) -> None:
    make_user(db, balance="5")
    signed_in(panel, db, "admin")
    page = panel.get(
        PAGE, params={"user": "nobody@example.com", "type": "gift", "from": "yesterday"}
    )
    assert page.status_code == 422
    assert "No user has this email, username or id." in page.text
    assert "One of: payment, credit, refund, charge, debit." in page.text
    assert "A date like 2026-01-31." in page.text
    assert 'data-entry="' not in page.text
    cursor = panel.get(PAGE, params={"cursor": "not-a-cursor"})
    assert cursor.status_code == 422
    assert panel.get(f"{PAGE}.csv", params={"to": "31/01/2026"}).status_code == 422


def test_support_sees_an_entry_but_no_refund_form(panel: TestClient, db: Session) -> None:
    customer = make_user(db)
    payment = completed_top_up(db, customer)
    signed_in(panel, db, "support")
    page = panel.get(f"{PAGE}/{payment.id}")
    assert page.status_code == 200
    assert "Left to refund: <strong>20.00 USD</strong>" in page.text
    assert "/refund" not in page.text
    assert panel.get(f"{PAGE}/{customer.id}").status_code == 404  # not an entry's id


def _refund(panel: TestClient, entry: Transaction, **form: str) -> object:
    token = csrf_of(panel.get(f"{PAGE}/{entry.id}").text)
    return panel.post(f"{PAGE}/{entry.id}/refund", data={"csrftoken": token, **form})


def test_a_partial_refund_of_a_top_up_leaves_ledger_and_balance_agreeing_once_per_form(
    panel: TestClient, db: Session
) -> None:
    customer = make_user(db)
    payment = completed_top_up(db, customer)
    signed_in(panel, db, "admin")
    form = {"amount": "5.00", "reason": "goodwill", "nonce": "refund-form-1"}

    first = _refund(panel, payment, **form)
    again = _refund(panel, payment, **form)  # the same form sent twice
    assert first.status_code == again.status_code == 303  # type: ignore[attr-defined]

    given_back = refunds_of(db, payment)
    assert [(e.type, e.amount, e.status) for e in given_back] == [
        ("debit", Decimal("5.00"), "completed")
    ]
    db.refresh(customer)
    assert customer.balance == Decimal("15.00")
    assert ledger.verify(db=db, user_id=customer.id) == []
    audited = db.scalar(
        select(func.count()).select_from(AuditLog).where(AuditLog.action == "transaction.refund")
    )
    assert audited == 1
    page = panel.get(f"{PAGE}/{payment.id}")
    assert f'data-refund="{given_back[0].id}"' in page.text
    assert "Left to refund: <strong>15.00 USD</strong>" in page.text


def test_more_than_is_left_is_refused_next_to_the_amount_and_changes_nothing(
    panel: TestClient, db: Session
) -> None:
    customer = make_user(db)
    payment = completed_top_up(db, customer, amount="10.00")
    signed_in(panel, db, "admin")
    answer = _refund(panel, payment, amount="10.01", reason="too much", nonce="n-too-much")
    assert answer.status_code == 409  # type: ignore[attr-defined]
    text = answer.text  # type: ignore[attr-defined]
    assert 'id="e-amount"' in text and "At most 10.00 USD" in text
    assert 'value="too much"' in text  # what was typed stays
    assert refunds_of(db, payment) == []
    db.refresh(customer)
    assert customer.balance == Decimal("10.00")


def test_bad_amounts_and_a_missing_reason_are_field_errors(panel: TestClient, db: Session) -> None:
    customer = make_user(db)
    payment = completed_top_up(db, customer)
    signed_in(panel, db, "admin")
    for amount, reason, field in (
        ("1.234", "x", "amount"),
        ("-1", "x", "amount"),
        ("0", "x", "amount"),
        ("1e3", "x", "amount"),
        ("2.00", "", "reason"),
    ):
        answer = _refund(panel, payment, amount=amount, reason=reason, nonce=f"n-{amount}")
        assert answer.status_code == 422, (amount, answer.text)  # type: ignore[attr-defined]
        assert f'id="e-{field}"' in answer.text  # type: ignore[attr-defined]
    assert refunds_of(db, payment) == []
    missing = _refund(panel, payment, amount="1.00", reason="x", nonce="")
    assert missing.status_code == 400  # type: ignore[attr-defined]


def test_a_pending_entry_is_not_refundable(panel: TestClient, db: Session) -> None:
    customer = make_user(db)
    pending = pending_payment(db, customer.id, "sandbox", "sbx_pending", amount="7.00")
    signed_in(panel, db, "admin")
    page = panel.get(f"{PAGE}/{pending.id}")
    assert "/refund" not in page.text
    token = csrf_of(page.text)
    answer = panel.post(
        f"{PAGE}/{pending.id}/refund",
        data={"csrftoken": token, "reason": "no", "nonce": "n-pending"},
    )
    assert answer.status_code == 409
    assert "Only completed charges and payments can be refunded" in answer.text


def test_the_csv_has_the_filtered_rows_and_is_formula_safe(panel: TestClient, db: Session) -> None:
    customer = make_user(db)
    pending_payment(db, customer.id, "sandbox", "=HYPERLINK(1)", amount="3.00")
    make_user(db, balance="4")  # someone else's credit: filtered out
    signed_in(panel, db, "support")
    answer = panel.get(f"{PAGE}.csv", params={"user": str(customer.id)})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(r["user_id"], r["type"], r["amount"]) for r in rows] == [
        (str(customer.id), "payment", "3.00")
    ]
    assert rows[0]["provider_transaction_id"] == "'=HYPERLINK(1)"
