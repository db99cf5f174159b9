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
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.billing import ledger
from vmcloud.billing.models import Transaction
from vmcloud.billing.payments.providers import (
    CUSTOMER_PROVIDERS,
    MalformedEventError,
    PaymentEvent,
    PaymentProvider,
    UnknownProviderError,
    provider_for,
)
from vmcloud.billing.service import currency
from vmcloud.config import Settings
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ConflictError, InvalidInputError, NotFoundError
from vmcloud.core.logging import get_logger
from vmcloud.site_settings import service as site_settings

log = get_logger(__name__)
SANDBOX_ID = re.compile(r"^sbx_[0-9a-f]{32}$")


@dataclass(frozen=True)
class TopUp:
    entry: Transaction
    checkout_url: str


@dataclass(frozen=True)
class WebhookOutcome:
    event: PaymentEvent
    entry: Transaction | None
    changed: bool  # false: ignored, unknown, or already handled (a repeated delivery)


def enabled_providers(db: Session) -> list[str]:
    value = site_settings.get_value(db=db, key="billing.payment_providers", default=[])
    return [str(name) for name in value] if isinstance(value, list) else []


def _limit(db: Session, key: str, default: str) -> Decimal:
    return Decimal(str(site_settings.get_value(db=db, key=key, default=default)))


def create_top_up(
    *, db: Session, user: User, amount: str, provider: str, settings: Settings
) -> TopUp:
    """A pending payment entry and the provider's checkout for it."""
    value = ledger.money(amount)
    low = _limit(db, "billing.topup_min", "5.00")
    high = _limit(db, "billing.topup_max", "1000.00")
    money_unit = currency(db)
    if not low <= value <= high:
        raise InvalidInputError(
            f"A top-up must be between {low:.2f} and {high:.2f} {money_unit}.",
            errors=[{"field": "amount", "message": f"between {low:.2f} and {high:.2f}"}],
        )
    choices = [p for p in enabled_providers(db) if p in CUSTOMER_PROVIDERS]
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
        entry=entry, customer_email=user.email, return_url=f"{settings.public_url.rstrip('/')}/"
    )
    entry.provider_transaction_id = checkout.provider_transaction_id
    entry.metadata_json = {"checkout_url": checkout.checkout_url}
    audit.label(entry, "transaction.top_up")
    db.flush()
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
    ledger.complete(db=db, entry_id=entry.id)
    audit.label(entry, "transaction.payment")
    from vmcloud.billing import subscriptions

    subscriptions.settle_debts(db=db, user_id=entry.user_id)
    return True


def _fail(db: Session, entry: Transaction, event: PaymentEvent) -> bool:
    if entry.status != "pending":
        return False
    entry.status = "failed"
    entry.processed_at = utcnow()
    _note(entry, event_id=event.event_id)
    audit.label(entry, "transaction.payment_failed")
    db.flush()
    return True


def find_sandbox_checkout(*, db: Session, provider_id: str) -> Transaction:
    """The pending sandbox payment behind a checkout page: 404 when there is none (or the
    sandbox is switched off), 409 when it is already paid or declined."""
    if "sandbox" not in enabled_providers(db) or not SANDBOX_ID.match(provider_id):
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


# -- staff: refunds and debits ------------------------------------------------------------------


def refundable(db: Session, original: Transaction) -> Decimal:
    """What is left to give back of a completed charge or payment."""
    given = db.scalar(
        select(func.coalesce(func.sum(Transaction.amount), 0)).where(
            Transaction.refund_of == original.id,
            Transaction.status.in_(("pending", "completed")),
        )
    )
    left = original.amount - Decimal(given or 0)
    if original.type == "charge" and original.subscription_id is not None:
        # Subscriptions refund on their own too (unused days): never give back more than the
        # subscription has charged in all.
        signed = case((Transaction.type == "refund", -Transaction.amount), else_=Transaction.amount)
        net = db.scalar(
            select(func.coalesce(func.sum(signed), 0)).where(
                Transaction.subscription_id == original.subscription_id,
                Transaction.type.in_(("charge", "refund")),
                Transaction.status == "completed",
            )
        )
        left = min(left, Decimal(net or 0))
    return max(left, Decimal("0.00"))


def refund_transaction(
    *,
    db: Session,
    admin: User,
    transaction_id: uuid.UUID,
    amount: str | None,
    reason: str,
    settings: Settings,
) -> Transaction:
    """A charge is refunded to the balance (a ``refund`` entry). A payment is refunded through
    its provider, and the money leaves the balance (a ``debit`` entry; 402 when the balance no
    longer covers it). Both point at the original with ``refund_of``; ``amount`` defaults to
    what is left."""
    original = db.get(Transaction, transaction_id, with_for_update=True)
    if original is None:
        raise NotFoundError("There is no such transaction.")
    if original.status != "completed" or original.type not in ("charge", "payment"):
        raise ConflictError(
            f"Only completed charges and payments can be refunded; this is a "
            f"{original.status} {original.type}.",
            type="not-refundable",
            title="Not refundable",
        )
    left = refundable(db, original)
    unit = original.currency or currency(db)
    if left <= 0:
        raise ConflictError("This transaction has already been refunded in full.")
    value = left if amount is None else ledger.money(amount)
    if value > left:
        raise ConflictError(f"At most {left:.2f} {unit} of this transaction can be refunded.")
    note = {"reason": reason, "refunded_by": str(admin.id)}
    if original.type == "charge":
        entry = ledger.post(
            db=db, user_id=original.user_id, type_="refund", amount=value, currency=unit,
            subscription_id=original.subscription_id, payment_method="balance",
            refund_of=original.id, metadata=note,
        )  # fmt: skip
    else:
        try:
            provider = provider_for(original.payment_provider or "manual", settings)
        except UnknownProviderError as exc:
            raise ConflictError(
                "This payment's provider is not available; refund it by hand and record a debit.",
                type="not-refundable",
                title="Not refundable",
            ) from exc
        # The balance is checked (and debited) before any money leaves through the provider.
        entry = ledger.post(
            db=db, user_id=original.user_id, type_="debit", amount=value, currency=unit,
            payment_method=original.payment_method, payment_provider=provider.name,
            refund_of=original.id, metadata=note,
        )  # fmt: skip
        reference = f"{original.id}-{original.amount - left}-{value}"
        entry.provider_transaction_id = provider.refund(
            entry=original, amount=value, reference=reference
        )
    audit.label(entry, "transaction.refund", extra={"refund_of": str(original.id)})
    db.flush()
    return entry


def debit(*, db: Session, admin: User, user_id: uuid.UUID, amount: str, reason: str) -> Transaction:
    """Staff debit: takes money off the balance (402 when it does not cover the amount)."""
    if db.get(User, user_id) is None:
        raise NotFoundError("There is no such user.")
    entry = ledger.post(
        db=db,
        user_id=user_id,
        type_="debit",
        amount=ledger.money(amount),
        currency=currency(db),
        payment_method="manual",
        payment_provider="manual",
        metadata={"reason": reason, "debited_by": str(admin.id)},
    )
    audit.label(entry, "transaction.debit")
    return entry
