"""The sandbox provider: payments without any payment account, for development and demos.

It behaves like a card provider: a top-up gets a checkout page (``/billing/sandbox/{id}``)
where the customer presses Pay or Decline, and the outcome reaches the platform as a signed
webhook event, Stripe-style (``Sandbox-Signature: t=<unix time>,v1=<HMAC-SHA256 hex of
"<t>.<body>">``), through the same handling as a real provider's. The signing secret is
generated once into ``<data_dir>/secrets/sandbox_webhook_secret``.

Anyone with a sandbox checkout can add money to their balance for free: enable it
(``billing.payment_providers``) on demo installs only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from html import escape
from typing import Any

from vmcloud.billing.models import Transaction
from vmcloud.billing.payments.providers import (
    TOLERANCE_SECONDS,
    Checkout,
    MalformedEventError,
    PaymentEvent,
    PaymentProvider,
    SignatureError,
)

SIGNATURE_HEADER = "sandbox-signature"
KINDS: dict[str, Any] = {"payment.succeeded": "succeeded", "payment.failed": "failed"}


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Sandbox-Signature`` header value for ``payload``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256)
    return f"t={stamp},v1={digest.hexdigest()}"


def verify(payload: bytes, header: str | None, secret: str, now: float | None = None) -> None:
    """:class:`SignatureError` unless ``header`` signs ``payload`` with ``secret`` within
    :data:`TOLERANCE_SECONDS` of now."""
    if not header or not header.isascii():
        raise SignatureError("The Sandbox-Signature header is missing or unreadable.")
    pairs = [item.strip().split("=", 1) for item in header.split(",")]
    stamps = [p[1] for p in pairs if len(p) == 2 and p[0] == "t"]
    signatures = [p[1].encode() for p in pairs if len(p) == 2 and p[0] == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or len(stamps[0]) > 12 or not signatures:
        raise SignatureError("The Sandbox-Signature header is malformed.")
    expected = sign(payload, secret, int(stamps[0])).rsplit("v1=", 1)[1].encode()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureError("The event's signature does not match.")
    if abs((time.time() if now is None else now) - int(stamps[0])) > TOLERANCE_SECONDS:
        raise SignatureError("The event is too old (or from the future) to be accepted.")


def build_event(
    *, provider_transaction_id: str, outcome: str, amount: Decimal, currency: str
) -> bytes:
    """The body of the event the checkout page sends for ``outcome`` ("pay" or "decline")."""
    event = {
        "id": f"evt_sbx_{secrets.token_hex(16)}",
        "type": "payment.succeeded" if outcome == "pay" else "payment.failed",
        "created": int(time.time()),
        "data": {
            "provider_transaction_id": provider_transaction_id,
            "amount": f"{amount:.2f}",
            "currency": currency,
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


class SandboxProvider(PaymentProvider):
    name = "sandbox"
    payment_method = "sandbox"

    def start_checkout(
        self, *, entry: Transaction, customer_email: str, return_url: str
    ) -> Checkout:
        provider_id = f"sbx_{secrets.token_hex(16)}"
        url = f"{self.settings.public_url.rstrip('/')}/billing/sandbox/{provider_id}"
        return Checkout(provider_transaction_id=provider_id, checkout_url=url)

    def signed_headers(self, payload: bytes) -> dict[str, str]:
        return {SIGNATURE_HEADER: sign(payload, self.settings.sandbox_webhook_key)}

    def parse_event(self, *, payload: bytes, headers: Mapping[str, str]) -> PaymentEvent:
        verify(payload, headers.get(SIGNATURE_HEADER), self.settings.sandbox_webhook_key)
        try:
            event = json.loads(payload)
            data = event["data"]
            provider_id = data["provider_transaction_id"]
            amount = Decimal(data["amount"]) if "amount" in data else None
            currency = data.get("currency")
            if not isinstance(provider_id, str) or not isinstance(event["type"], str):
                raise TypeError("ids and types are strings")
            if currency is not None and not isinstance(currency, str):
                raise TypeError("currency is a string")
            if amount is not None and not amount.is_finite():
                raise ValueError("amount is a number")
        except (ValueError, TypeError, KeyError, InvalidOperation) as exc:
            raise MalformedEventError("The body is not a sandbox payment event.") from exc
        return PaymentEvent(
            kind=KINDS.get(event["type"], "ignored"),
            provider_transaction_id=provider_id,
            event_id=str(event.get("id")),
            amount=amount,
            currency=currency,
            details={"event_type": event["type"]},
        )

    def refund(self, *, entry: Transaction, amount: Decimal, reference: str) -> str:
        return f"sbxr_{secrets.token_hex(16)}"


# -- the checkout page ------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · VMCloud sandbox</title>
<style>
 body {{ font-family: system-ui, sans-serif; max-width: 28rem; margin: 4rem auto; padding: 0 1rem;
        color: #1f2933; }}
 h1 {{ font-size: 1.4rem; }} .amount {{ font-size: 2rem; margin: 1rem 0; }}
 .note {{ background: #fff7e6; border: 1px solid #f5c46b; padding: .6rem .8rem; }}
 button {{ font: inherit; padding: .55rem 1.2rem; margin: .8rem .5rem 0 0; border: 0;
          border-radius: 4px; cursor: pointer; }}
 .pay {{ background: #067647; color: #fff; }} .decline {{ background: #b42318; color: #fff; }}
</style></head>
<body><main><h1>{title}</h1>{body}</main></body></html>"""

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def page(title: str, body_html: str) -> str:
    """A whole page; ``body_html`` must already be escaped."""
    return _PAGE.format(title=escape(title), body=body_html)


def checkout_page(*, amount: Decimal, currency: str, site: str) -> str:
    return page(
        "Sandbox checkout",
        f"<p>Top-up for {escape(site)}</p>"
        f'<p class="amount">{escape(f"{amount:.2f}")} {escape(currency)}</p>'
        '<p class="note">This is the sandbox payment provider for demos: no card is charged '
        "and no money moves.</p>"
        '<form method="post">'
        '<button class="pay" name="outcome" value="pay">Pay</button>'
        '<button class="decline" name="outcome" value="decline">Decline</button>'
        "</form>",
    )


def message_page(title: str, message: str, back_url: str) -> str:
    return page(
        title, f'<p>{escape(message)}</p><p><a href="{escape(back_url)}">Back to VMCloud</a></p>'
    )
