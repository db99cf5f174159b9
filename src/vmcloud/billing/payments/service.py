"""Payments: top-ups through a provider, the provider's webhooks, staff refunds and debits.

Money only moves through the ledger. A top-up is a ``pending`` payment entry until the
provider's signed webhook says it succeeded; completing it is idempotent, so a webhook
delivered twice (or the sandbox page posted twice) credits the balance once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from prometheus_client import Counter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.billing import dunning, ledger
from vmcloud.billing.models import Transaction
from vmcloud.billing.payments.providers import (
    CUSTOMER_PROVIDERS,
    MalformedEventError,
    PaymentEvent,
    PaymentProvider,
)
from vmcloud.billing.payments.registry import provider_for
from vmcloud.config import Settings
from vmcloud.core import events
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ConflictError, InvalidInputError, NotFoundError
from vmcloud.core.logging import get_logger
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CURRENCY, PAYMENT_PROVIDERS, TOPUP_MAX, TOPUP_MIN

log = get_logger(__name__)
SANDBOX_ID = re.compile(r"^sbx_[0-9a-f]{32}$")
NOT_CREDITED = Counter(
    "vmcloud_payments_not_credited_total",
    "Payments a provider captured that could not be credited (the balance limit): staff act.",
    ["provider"],
)


@dataclass(frozen=True)
class TopUp:
    entry: Transaction
    checkout_url: str


@dataclass(frozen=True)
class WebhookOutcome:
    event: PaymentEvent
    entry: Transaction | None
    changed: bool  # false: ignored, unknown, or already handled (a repeated delivery)


@dataclass(frozen=True)
class TopUpTerms:
    """What a top-up may be on this site (settings), for the top-up form."""

    low: Decimal
    high: Decimal
    currency: str
    providers: list[str]


def top_up_terms(*, db: Session) -> TopUpTerms:
    return TopUpTerms(
        low=site_settings.get(db, TOPUP_MIN),
        high=site_settings.get(db, TOPUP_MAX),
        currency=site_settings.get(db, CURRENCY),
        providers=[p for p in site_settings.get(db, PAYMENT_PROVIDERS) if p in CUSTOMER_PROVIDERS],
    )


def create_top_up(
    *, db: Session, user: User, amount: str, provider: str, settings: Settings
) -> TopUp:
    """A pending payment entry and the provider's checkout for it."""
    value = ledger.money(amount)
    terms = top_up_terms(db=db)
    low, high, money_unit, choices = terms.low, terms.high, terms.currency, terms.providers
    if not low <= value <= high:
        raise InvalidInputError(
            f"A top-up must be between {low:.2f} and {high:.2f} {money_unit}.",
            errors=[{"field": "amount", "message": f"between {low:.2f} and {high:.2f}"}],
        )
    ledger.check_room(db=db, user_id=user.id, amount=value)  # before the customer pays
    if provider not in choices:
        raise InvalidInputError(
            f"Choose a payment provider this site offers: {', '.join(choices) or 'none'}.",
            errors=[{"field": "provider", "message": f"one of: {', '.join(choices)}"}],
        )
    gateway = provider_for(provider, settings)
    entry = ledger.post(
        db=db,
        user_id=user.id,
        type_="payment",
        amount=value,
        currency=money_unit,
        status="pending",
        payment_method=gateway.payment_method,
        payment_provider=gateway.name,
    )
    # The checkout carries our entry's id, so the entry exists (flushed) before it starts.
    checkout = gateway.start_checkout(
        entry=entry,
        customer_email=user.email,
        return_url=f"{settings.public_url.rstrip('/')}/billing",
    )
    entry.provider_transaction_id = checkout.provider_transaction_id
    entry.metadata_json = {"checkout_url": checkout.checkout_url}
    audit.label(entry, "transaction.top_up")
    db.flush()
    events.announce(db, kind="top_up", user_id=user.id, id=entry.id)
    return TopUp(entry=entry, checkout_url=checkout.checkout_url)


def webhook_provider(name: str, settings: Settings) -> PaymentProvider:
    """A provider that sends webhooks (404 for any other name)."""
    if name not in CUSTOMER_PROVIDERS:
        raise NotFoundError("There is no payment provider by that name.")
    return provider_for(name, settings)


def handle_webhook(
    *, db: Session, provider: PaymentProvider, payload: bytes, headers: Mapping[str, str]
) -> WebhookOutcome:
    """Verify one delivery and apply it. Unknown payments and event kinds are acknowledged and
    change nothing; a payment is completed (or failed) once, whatever is delivered again."""
    event = provider.parse_event(payload=payload, headers=headers)
    if not all(_storable(v) for v in (event.provider_transaction_id, event.event_id)):
        raise MalformedEventError("The event carries an id this platform cannot have issued.")
    if event.kind == "ignored" or event.provider_transaction_id is None:
        return WebhookOutcome(event=event, entry=None, changed=False)
    entry = db.scalars(
        select(Transaction)
        .where(
            Transaction.payment_provider == provider.name,
            Transaction.provider_transaction_id == event.provider_transaction_id,
            Transaction.type == "payment",
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if entry is None:
        log.info("payment.webhook_unknown", provider=provider.name, event_id=event.event_id)
        return WebhookOutcome(event=event, entry=None, changed=False)
    apply = _succeed if event.kind == "succeeded" else _fail
    changed = apply(db, entry, event)
    if changed:  # pending → completed or failed: open billing pages follow
        events.announce(db, kind="top_up", user_id=entry.user_id, id=entry.id)
    return WebhookOutcome(event=event, entry=entry, changed=changed)


def _storable(value: object) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= 255 and "\x00" not in value)


def _note(entry: Transaction, **values: object) -> None:
    kept = {k: v for k, v in values.items() if v and _storable(v)}
    entry.metadata_json = {**(entry.metadata_json or {}), **kept}


def _succeed(db: Session, entry: Transaction, event: PaymentEvent) -> bool:
    if entry.status != "pending":
        if entry.status == "failed":  # money taken for a payment we gave up on: staff look
            audit.record(
                db=db,
                action="transaction.payment_after_failure",
                entity_type="transaction",
                entity_id=entry.id,
                extra={"event_id": event.event_id},
            )
        return False
    wrong_amount = event.amount is not None and event.amount != entry.amount
    wrong_currency = event.currency is not None and event.currency != entry.currency
    if wrong_amount or wrong_currency:
        log.warning("payment.amount_mismatch", entry=str(entry.id), event_id=event.event_id)
        audit.record(
            db=db,
            action="transaction.payment_mismatch",
            entity_type="transaction",
            entity_id=entry.id,
            extra={"event_id": event.event_id, "paid": f"{event.amount} {event.currency}"},
        )
        return False
    _note(entry, event_id=event.event_id, payment_intent=event.details.get("payment_intent"))
    db.flush()
    try:
        ledger.complete(db=db, entry_id=entry.id)
    except ledger.BalanceLimitError:
        _not_credited(db, entry, event)
        return False
    audit.label(entry, "transaction.payment")

    dunning.settle_debts(db=db, user_id=entry.user_id)
    return True


def _not_credited(db: Session, entry: Transaction, event: PaymentEvent) -> None:
    """The provider has the customer's money but the balance has no room for it. The delivery
    is still acknowledged (a provider retrying would change nothing); the entry stays
    ``pending``, marked for staff, and a later delivery of the same event credits it once
    there is room."""
    _note(entry, not_credited="balance-limit")
    db.flush()
    log.error(
        "payment.not_credited",
        entry=str(entry.id),
        provider=entry.payment_provider,
        event_id=event.event_id,
        reason="balance-limit",
    )
    NOT_CREDITED.labels(entry.payment_provider or "unknown").inc()
    audit.record(
        db=db,
        action="transaction.payment_not_credited",
        entity_type="transaction",
        entity_id=entry.id,
        extra={"event_id": event.event_id, "reason": "balance-limit"},
    )


def _fail(db: Session, entry: Transaction, event: PaymentEvent) -> bool:
    if entry.status != "pending":
        return False
    entry.status = "failed"
    entry.processed_at = utcnow()
    _note(entry, event_id=event.event_id)
    audit.label(entry, "transaction.payment_failed")
    db.flush()
    return True


def own_checkout(*, db: Session, user: User, entry_id: uuid.UUID) -> str:
    """The checkout page of one of ``user``'s pending top-ups (404 for anyone else's, or when
    it is no longer pending)."""
    entry = db.get(Transaction, entry_id)
    url = (entry.metadata_json or {}).get("checkout_url") if entry is not None else None
    if entry is None or entry.user_id != user.id or entry.type != "payment":
        raise NotFoundError("There is no such top-up.")
    if entry.status != "pending" or not isinstance(url, str):
        raise NotFoundError("This top-up is no longer waiting for a payment.")
    return url


def find_sandbox_checkout(*, db: Session, provider_id: str) -> Transaction:
    """The pending sandbox payment behind a checkout page: 404 when there is none (or the
    sandbox is switched off), 409 when it is already paid or declined."""
    sandbox_on = "sandbox" in site_settings.get(db, PAYMENT_PROVIDERS)
    if not sandbox_on or not SANDBOX_ID.match(provider_id):
        raise NotFoundError("There is no such checkout.")
    entry = db.scalars(
        select(Transaction).where(
            Transaction.payment_provider == "sandbox",
            Transaction.provider_transaction_id == provider_id,
            Transaction.type == "payment",
        )
    ).one_or_none()
    if entry is None:
        raise NotFoundError("There is no such checkout.")
    if entry.status != "pending":
        raise ConflictError(f"This checkout is finished (the payment is {entry.status}).")
    return entry


@dataclass(frozen=True)
class TopUpsToday:
    count: int
    total: Decimal


def top_ups_today(*, db: Session, now: datetime | None = None) -> TopUpsToday:
    """Top-ups completed since midnight UTC, and their sum (the staff overview)."""
    moment = now or utcnow()
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    row = db.execute(
        select(func.count(), func.coalesce(func.sum(Transaction.amount), 0)).where(
            Transaction.type == "payment",
            Transaction.status == "completed",
            Transaction.processed_at >= midnight,
        )
    ).one()
    return TopUpsToday(count=int(row[0]), total=Decimal(row[1]))
