"""Routes: top-ups, provider webhooks, the sandbox checkout page, staff refunds and debits."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.orm import Session

from vmcloud.accounts.deps import AdminUser, VerifiedUser
from vmcloud.accounts.models import User
from vmcloud.billing.payments import refunds, sandbox, service
from vmcloud.billing.payments.schemas import (
    RefundCreate,
    TopUpCreate,
    TopUpRead,
    WebhookReceived,
)
from vmcloud.billing.schemas import TransactionRead
from vmcloud.config import Settings
from vmcloud.core import idempotency
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ProblemError
from vmcloud.core.idempotency import KeyHeader
from vmcloud.db.session import DbSession
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import SITE_NAME

router = APIRouter(prefix="/billing", tags=["billing"])
admin = APIRouter(prefix="/admin", tags=["admin: billing"])
# Pages outside /api/v1 (the sandbox provider's checkout page).
pages = APIRouter(include_in_schema=False)

MAX_EVENT_BYTES = 256 * 1024
BACK = "/billing"  # where the sandbox's pages lead back to: the panel's billing page


async def _raw_body(request: Request) -> bytes:
    """The body exactly as sent (signatures cover the bytes), refused past a sane size."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_EVENT_BYTES:
            raise ProblemError(
                "The event is too large.", status=413, type="payload-too-large", title="Too large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


RawBody = Annotated[bytes, Depends(_raw_body)]


@router.post(
    "/top-ups",
    response_model=TopUpRead,
    status_code=status.HTTP_201_CREATED,
    summary="Add money to your balance through a payment provider",
)
def create_top_up(
    body: TopUpCreate, db: DbSession, user: VerifiedUser, key: KeyHeader, settings: AppSettings
) -> TopUpRead | JSONResponse:
    return top_up_once(db=db, user=user, body=body, key=key, settings=settings)


def top_up_once(
    *, db: Session, user: User, body: TopUpCreate, key: str | None, settings: Settings
) -> TopUpRead | JSONResponse:
    """A top-up, once per idempotency key (the API's header, the panel form's nonce): a
    replay answers the first one's response."""

    def top_up() -> TopUpRead:
        made = service.create_top_up(
            db=db, user=user, amount=body.amount, provider=body.provider, settings=settings
        )
        return TopUpRead(
            **TransactionRead.model_validate(made.entry).model_dump(),
            checkout_url=made.checkout_url,
        )

    return idempotency.once(
        db=db,
        user_id=user.id,
        key=key,
        endpoint="POST /billing/top-ups",
        body=body,
        status=status.HTTP_201_CREATED,
        produce=top_up,
    )


@router.post(
    "/webhooks/{provider}",
    response_model=WebhookReceived,
    summary="Payment provider events (signature-verified)",
)
def receive_webhook(
    provider: str, request: Request, payload: RawBody, db: DbSession, settings: AppSettings
) -> WebhookReceived:
    gateway = service.webhook_provider(provider, settings)
    service.handle_webhook(db=db, provider=gateway, payload=payload, headers=request.headers)
    return WebhookReceived(received=True)


@admin.post(
    "/transactions/{transaction_id}/refund",
    response_model=TransactionRead,
    status_code=status.HTTP_201_CREATED,
)
def refund_transaction(
    transaction_id: uuid.UUID,
    body: RefundCreate,
    db: DbSession,
    user: AdminUser,
    key: KeyHeader,
    settings: AppSettings,
) -> TransactionRead | JSONResponse:
    return refund_once(
        db=db, admin=user, transaction_id=transaction_id, body=body, key=key, settings=settings
    )


def refund_once(
    *,
    db: Session,
    admin: User,
    transaction_id: uuid.UUID,
    body: RefundCreate,
    key: str | None,
    settings: Settings,
) -> TransactionRead | JSONResponse:
    """A staff refund, once per idempotency key (the API's header, the panel form's nonce): a
    replay answers the first one's response."""
    return idempotency.once(
        db=db,
        user_id=admin.id,
        key=key,
        endpoint=f"POST /admin/transactions/{transaction_id}/refund",
        body=body,
        status=status.HTTP_201_CREATED,
        produce=lambda: TransactionRead.model_validate(
            refunds.refund_transaction(
                db=db,
                admin=admin,
                transaction_id=transaction_id,
                amount=body.amount,
                reason=body.reason,
                settings=settings,
            )
        ),
    )


# -- the sandbox provider's checkout page ------------------------------------------------------


def _html(text: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status_code, headers=sandbox.PAGE_HEADERS)


def _problem_page(exc: ProblemError, back_url: str) -> HTMLResponse:
    title = "No such checkout" if exc.status == 404 else "Checkout finished"
    return _html(sandbox.message_page(title, exc.detail or exc.title, back_url), exc.status)


@pages.get("/billing/sandbox/{provider_id}", response_class=HTMLResponse)
def sandbox_checkout(provider_id: str, db: DbSession, settings: AppSettings) -> HTMLResponse:
    try:
        entry = service.find_sandbox_checkout(db=db, provider_id=provider_id)
    except ProblemError as exc:
        return _problem_page(exc, BACK)
    site = site_settings.get(db, SITE_NAME)
    return _html(
        sandbox.checkout_page(amount=entry.amount, currency=entry.currency or "", site=site)
    )


@pages.post("/billing/sandbox/{provider_id}", response_class=HTMLResponse)
def sandbox_submit(
    provider_id: str,
    db: DbSession,
    settings: AppSettings,
    outcome: Annotated[str, Form()] = "",
) -> HTMLResponse:
    back = BACK
    try:
        entry = service.find_sandbox_checkout(db=db, provider_id=provider_id)
    except ProblemError as exc:
        return _problem_page(exc, back)
    if outcome not in ("pay", "decline"):
        return _html(sandbox.message_page("Checkout", "Press Pay or Decline.", back), 422)
    # Exactly what a provider would send: a signed event, through the webhook handling.
    provider = sandbox.SandboxProvider(settings)
    payload = sandbox.build_event(
        provider_transaction_id=provider_id,
        outcome=outcome,
        amount=entry.amount,
        currency=entry.currency or "",
    )
    result = service.handle_webhook(
        db=db, provider=provider, payload=payload, headers=provider.signed_headers(payload)
    )
    if not result.changed:
        return _html(sandbox.message_page("Checkout finished", "Nothing changed.", back), 409)
    if result.event.kind == "succeeded":
        message = f"Payment received: {entry.amount:.2f} {entry.currency} added to your balance."
        return _html(sandbox.message_page("Payment received", message, back))
    return _html(sandbox.message_page("Payment declined", "The payment was declined.", back))
