"""A local stand-in for api.stripe.com (the two calls the platform makes), and Stripe-signed
webhook events."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

STRIPE_WEBHOOK_SECRET = "whsec_test_" + "s" * 32
STRIPE_API_KEY = "sk_test_fake_key"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class FakeStripe:
    """Answers the two Stripe calls the platform makes, and records what it was sent."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    fail: bool = False  # answer every call with a card error
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def answer(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.fail:
            return 402, {"error": {"type": "card_error", "message": "declined", "code": "x"}}
        n = next(self._ids)
        if path == "/v1/checkout/sessions":
            return 200, {
                "id": f"cs_test_{n}",
                "object": "checkout.session",
                "url": f"https://checkout.stripe.test/c/pay/cs_test_{n}",
                "client_reference_id": form.get("client_reference_id"),
            }
        if path == "/v1/refunds":
            return 200, {"id": f"re_test_{n}", "object": "refund", "status": "succeeded"}
        return 404, {"error": {"type": "invalid_request_error", "message": "no such path"}}


@contextmanager
def fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            fake.requests.append(Recorded(self.path, dict(self.headers.items()), form))
            status, body = fake.answer(self.path, form)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def signature(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """``t=<ts>,v1=<HMAC-SHA256(secret, "<ts>.<payload>")>``, as Stripe (and the sandbox) sign."""
    stamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def stripe_event(
    type_: str,
    session_id: str,
    *,
    amount_total: int = 2000,
    currency: str = "usd",
    payment_status: str = "paid",
    payment_intent: str | None = "pi_test_1",
    event_id: str = "evt_test_1",
) -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "type": type_,
        "created": int(time.time()),
        "data": {
            "object": {
                "id": session_id,
                "object": "checkout.session",
                "amount_total": amount_total,
                "currency": currency,
                "payment_status": payment_status,
                "payment_intent": payment_intent,
            }
        },
    }
    return json.dumps(event).encode()
