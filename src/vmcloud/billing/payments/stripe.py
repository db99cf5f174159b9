"""Stripe: card payments through Stripe Checkout, with the official SDK.

A top-up is one Checkout Session (mode ``payment``) for the entry's amount; the session id is
the ledger's ``provider_transaction_id`` and our transaction id travels as
``client_reference_id``. Stripe tells us the outcome through signed webhooks
(``checkout.session.*``); refunds go through the Refunds API against the session's payment
intent, which the service keeps in the entry's metadata when the payment succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import stripe

from vmcloud.billing.models import Transaction
from vmcloud.billing.payments.providers import (
    TOLERANCE_SECONDS,
    Checkout,
    MalformedEventError,
    PaymentEvent,
    PaymentProvider,
    ProviderError,
    ProviderNotConfiguredError,
    SignatureError,
    cents,
)
from vmcloud.core.errors import ConflictError, InvalidInputError
from vmcloud.core.logging import get_logger

log = get_logger(__name__)

# Currencies Stripe counts in whole units (no cents): amounts go to Stripe as they are.
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV"}
    | {"XAF", "XOF", "XPF"}
)
SUCCEEDED = ("checkout.session.async_payment_succeeded",)
FAILED = ("checkout.session.async_payment_failed", "checkout.session.expired")


def minor_units(amount: Decimal, currency: str) -> int:
    if currency.upper() in ZERO_DECIMAL:
        if amount != amount.to_integral_value():
            raise InvalidInputError(
                f"{currency.upper()} amounts have no cents.",
                errors=[{"field": "amount", "message": "a whole number"}],
            )
        return int(amount)
    return cents(amount)


def from_minor_units(value: int, currency: str) -> Decimal:
    return Decimal(value) if currency.upper() in ZERO_DECIMAL else Decimal(value) / 100


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    # Stripe fills the literal {CHECKOUT_SESSION_ID} in; it must not be percent-encoded.
    query = query.replace("%7BCHECKOUT_SESSION_ID%7D", "{CHECKOUT_SESSION_ID}")
    return urlunsplit(parts._replace(query=query))


class StripeProvider(PaymentProvider):
    name = "stripe"
    payment_method = "card"

    def _client(self) -> stripe.StripeClient:
        key = self.settings.stripe_secret_key
        if key is None or not key.get_secret_value():
            raise ProviderNotConfiguredError(
                "Card payments are not configured on this installation."
            )
        base = self.settings.stripe_api_base
        return stripe.StripeClient(
            key.get_secret_value(), base_addresses={"api": base} if base else None
        )

    def start_checkout(
        self, *, entry: Transaction, customer_email: str, return_url: str
    ) -> Checkout:
        client = self._client()
        currency = (entry.currency or "USD").lower()
        reference = {"transaction_id": str(entry.id), "user_id": str(entry.user_id)}
        try:
            session = client.v1.checkout.sessions.create(
                params={
                    "mode": "payment",
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": currency,
                                "unit_amount": minor_units(entry.amount, currency),
                                "product_data": {"name": "Account top-up"},
                            },
                        }
                    ],
                    "client_reference_id": str(entry.id),
                    "customer_email": customer_email,
                    "metadata": reference,
                    "payment_intent_data": {"metadata": reference},
                    "success_url": _with_query(
                        return_url, top_up="success", session_id="{CHECKOUT_SESSION_ID}"
                    ),
                    "cancel_url": _with_query(return_url, top_up="cancelled"),
                },
                # A retry of this very call (network trouble) opens no second session.
                options={"idempotency_key": f"vmcloud-checkout-{entry.id}"},
            )
        except stripe.StripeError as exc:
            log.warning("stripe.checkout_failed", error=type(exc).__name__, entry=str(entry.id))
            raise ProviderError("The card payment could not be started; try again later.") from exc
        if not session.id or not session.url:
            raise ProviderError("The card payment could not be started; try again later.")
        return Checkout(provider_transaction_id=session.id, checkout_url=session.url)

    def parse_event(self, *, payload: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        secret = self.settings.stripe_webhook_secret
        if secret is None or not secret.get_secret_value():
            raise ProviderNotConfiguredError("Stripe webhooks are not configured.")
        header = headers.get("stripe-signature")
        if not header or not header.isascii():
            raise SignatureError("The Stripe-Signature header is missing or unreadable.")
        try:
            event = stripe.Webhook.construct_event(
                payload, header, secret.get_secret_value(), tolerance=TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError as exc:
            raise SignatureError(
                "The event's signature does not match, or the event is too old."
            ) from exc
        except (ValueError, TypeError, AttributeError) as exc:  # signed, but not an event
            raise MalformedEventError("The event is not a Stripe event.") from exc
        try:
            return _to_payment_event(event.to_dict())
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise MalformedEventError("The event is not a Stripe event.") from exc

    def refund(self, *, entry: Transaction, amount: Decimal, reference: str) -> str:
        intent = (entry.metadata_json or {}).get("payment_intent")
        if not isinstance(intent, str) or not intent:
            raise ConflictError("This payment has no Stripe payment intent to refund.")
        client = self._client()
        try:
            refund = client.v1.refunds.create(
                params={
                    "payment_intent": intent,
                    "amount": minor_units(amount, entry.currency or "USD"),
                    "metadata": {"transaction_id": str(entry.id)},
                },
                options={"idempotency_key": f"vmcloud-refund-{reference}"},
            )
        except stripe.StripeError as exc:
            log.warning("stripe.refund_failed", error=type(exc).__name__, entry=str(entry.id))
            raise ProviderError("Stripe refused or failed the refund; nothing changed.") from exc
        return str(refund.id)


def _to_payment_event(event: dict[str, Any]) -> PaymentEvent:
    kind = str(event["type"])
    session = event["data"]["object"]
    if not isinstance(session, dict):
        raise TypeError("data.object is not an object")
    paid = kind == "checkout.session.completed" and session.get("payment_status") == "paid"
    outcome: Any = "ignored"
    if paid or kind in SUCCEEDED:
        outcome = "succeeded"
    elif kind in FAILED:
        outcome = "failed"
    session_id = session.get("id") if kind.startswith("checkout.session.") else None
    currency = session.get("currency")
    total = session.get("amount_total")
    amount: Decimal | None = None
    if isinstance(currency, str) and isinstance(total, int) and not isinstance(total, bool):
        amount, currency = from_minor_units(total, currency), currency.upper()
    else:
        currency = None
    return PaymentEvent(
        kind=outcome,
        provider_transaction_id=session_id if isinstance(session_id, str) else None,
        event_id=str(event.get("id") or "") or None,
        amount=amount,
        currency=currency,
        details={"event_type": kind, "payment_intent": session.get("payment_intent")},
    )
