"""The contract every payment provider keeps, and the registry that picks one by name.

Rules that hold for every implementation:

- A provider never touches the ledger or the database. It starts a checkout for a pending
  ``payment`` entry the service already wrote, turns a provider's webhook delivery into a
  :class:`PaymentEvent`, and gives money back. The service decides what that means for balances.
- ``start_checkout`` returns the provider's own id for the payment (unique per provider; the
  ledger has a unique index on it) and the address the customer pays at. It may be called inside
  the request's database transaction: when it raises, nothing was written.
- ``parse_event`` verifies before it parses: a delivery that is not signed with the provider's
  secret, whose body was changed after signing, or whose signature is older than
  :data:`TOLERANCE_SECONDS` (a replay) raises :class:`SignatureError`. A signed body that is not
  an event raises :class:`MalformedEventError`. Event kinds the platform has no use for come back
  as ``"ignored"``, never as an error (the provider would retry them forever).
- Delivering the same event twice yields the same :class:`PaymentEvent`; the service makes the
  second delivery change nothing.
- ``refund`` gives ``amount`` of a completed payment back through the provider and returns the
  provider's refund id; the service has already checked the amount against what is left.
- Provider failures raise :class:`ProviderError`, whose message is safe to show (no keys, no
  raw provider responses).
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Literal

from vmcloud.billing.models import Transaction
from vmcloud.config import Settings
from vmcloud.core.errors import NotFoundError, ProblemError

TOLERANCE_SECONDS = 300
# Providers customers may choose for a top-up; "manual" is the staff's own (credits, debits).
CUSTOMER_PROVIDERS = ("sandbox", "stripe")


class SignatureError(ProblemError):
    status = 400
    type = "invalid-signature"
    title = "Invalid webhook signature"


class MalformedEventError(ProblemError):
    status = 400
    type = "malformed-event"
    title = "Malformed webhook event"


class ProviderError(ProblemError):
    status = 502
    type = "payment-provider-error"
    title = "Payment provider error"


class ProviderNotConfiguredError(ProblemError):
    status = 503
    type = "payment-provider-unavailable"
    title = "Payment provider not configured"


class UnknownProviderError(NotFoundError):
    pass


@dataclass(frozen=True)
class Checkout:
    provider_transaction_id: str
    checkout_url: str


@dataclass(frozen=True)
class PaymentEvent:
    kind: Literal["succeeded", "failed", "ignored"]
    provider_transaction_id: str | None
    event_id: str | None
    # What the provider says was paid, when it says so (checked against the entry).
    amount: Decimal | None = None
    currency: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class PaymentProvider(ABC):
    name: ClassVar[str]
    # What ledger entries paid through this provider record as ``payment_method``.
    payment_method: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def start_checkout(
        self, *, entry: Transaction, customer_email: str, return_url: str
    ) -> Checkout:
        """Open a checkout for the pending payment ``entry`` (its amount and currency); the
        customer is sent back to ``return_url`` afterwards."""

    @abstractmethod
    def parse_event(self, *, payload: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        """Verify and read one webhook delivery (the raw body and the request headers)."""

    @abstractmethod
    def refund(self, *, entry: Transaction, amount: Decimal, reference: str) -> str:
        """Give ``amount`` of the completed payment ``entry`` back; returns the refund's id.
        ``reference`` names this one refund: calling again with the same reference (a retry
        after a lost answer) must not refund twice where the provider can ensure it."""


class ManualProvider(PaymentProvider):
    """Money staff move by hand (credits, debits, refunds paid out of band). Never a top-up
    choice and never sends webhooks."""

    name = "manual"
    payment_method = "manual"

    def start_checkout(
        self, *, entry: Transaction, customer_email: str, return_url: str
    ) -> Checkout:
        raise UnknownProviderError("Manual payments are made by staff, not through a checkout.")

    def parse_event(self, *, payload: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        raise UnknownProviderError("The manual provider sends no webhooks.")

    def refund(self, *, entry: Transaction, amount: Decimal, reference: str) -> str:
        return f"manual_{secrets.token_hex(16)}"


def cents(amount: Decimal) -> int:
    """An amount in the currency's minor unit (every currency VMCloud bills in has cents)."""
    return int((amount * 100).to_integral_value())
