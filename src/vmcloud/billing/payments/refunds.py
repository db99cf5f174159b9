"""Staff refunds and debits.

A refunded charge goes back to the balance (a ``refund`` entry). A refunded payment goes back
through its provider and leaves the balance (a ``debit`` entry). Both point at the original
with ``refund_of``, and never give back more than is left of it.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.billing import dunning, ledger, subscriptions
from vmcloud.billing.models import Transaction
from vmcloud.billing.payments.providers import UnknownProviderError
from vmcloud.billing.payments.registry import provider_for
from vmcloud.config import Settings
from vmcloud.core.errors import ConflictError, NotFoundError
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CURRENCY


def refundable(db: Session, original: Transaction) -> Decimal:
    """What is left to give back of a completed charge or payment."""
    left = original.amount - ledger.given_back(db, original.id)
    if original.type == "charge" and original.subscription_id is not None:
        # Subscriptions refund on their own too (unused days): never give back more than the
        # subscription has charged in all.
        left = min(left, subscriptions.net_charged(db, original.subscription_id))
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
    unit = original.currency or site_settings.get(db, CURRENCY)
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
    if entry.type == "refund":
        dunning.settle_debts(db=db, user_id=entry.user_id)  # money in pays what is due
    return entry
