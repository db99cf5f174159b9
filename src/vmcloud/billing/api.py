"""Routes: balance and ledger for customers; credits for admins."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse

from vmcloud.accounts.deps import AdminUser, CurrentUser, StaffUser
from vmcloud.billing import adjustments, flows, service
from vmcloud.billing import subscriptions as subs
from vmcloud.billing.deps import ChangeableSubscription, VisibleSubscription
from vmcloud.billing.models import SUBSCRIPTION_STATUSES
from vmcloud.billing.schemas import (
    AdminSubscriptionRead,
    AdminTransactionRead,
    Balance,
    CreditCreate,
    DebitCreate,
    SubscriptionRead,
    TransactionRead,
)
from vmcloud.core import idempotency
from vmcloud.core.idempotency import KeyHeader
from vmcloud.core.pagination import Page, PageQuery, page_of
from vmcloud.core.schemas import UTCInput
from vmcloud.db.session import DbSession, ReadDbSession

router = APIRouter(prefix="/billing", tags=["billing"])
subscriptions = APIRouter(prefix="/subscriptions", tags=["billing"])
admin = APIRouter(prefix="/admin", tags=["admin: billing"])


@router.get("/balance", response_model=Balance)
def get_balance(db: DbSession, user: CurrentUser) -> Balance:
    amount, currency = service.balance_of(db=db, user=user)
    return Balance(balance=amount, currency=currency)


@router.get("/transactions", response_model=Page[TransactionRead], summary="Your ledger")
def list_transactions(
    db: ReadDbSession, user: CurrentUser, page: PageQuery
) -> Page[TransactionRead]:
    items, cursor = service.list_transactions(db=db, user=user, params=page)
    return page_of(TransactionRead, items, cursor)


def _adjust(
    kind: Literal["credit", "debit"],
    user_id: uuid.UUID,
    body: CreditCreate | DebitCreate,
    db: DbSession,
    admin_user: AdminUser,
    key: str | None,
) -> TransactionRead | JSONResponse:
    """A staff credit or debit, once per Idempotency-Key."""
    post = adjustments.credit if kind == "credit" else adjustments.debit
    return idempotency.once(
        db=db,
        user_id=admin_user.id,
        key=key,
        endpoint=f"POST /admin/users/{user_id}/{kind}s",
        body=body,
        status=status.HTTP_201_CREATED,
        produce=lambda: TransactionRead.model_validate(
            post(db=db, user_id=user_id, amount=body.amount, reason=body.reason, admin=admin_user)
        ),
    )


@admin.post(
    "/users/{user_id}/credits", response_model=TransactionRead, status_code=status.HTTP_201_CREATED
)
def grant_credit(
    user_id: uuid.UUID, body: CreditCreate, db: DbSession, user: AdminUser, key: KeyHeader
) -> TransactionRead | JSONResponse:
    return _adjust("credit", user_id, body, db, user, key)


@admin.post(
    "/users/{user_id}/debits", response_model=TransactionRead, status_code=status.HTTP_201_CREATED
)
def debit(
    user_id: uuid.UUID, body: DebitCreate, db: DbSession, user: AdminUser, key: KeyHeader
) -> TransactionRead | JSONResponse:
    return _adjust("debit", user_id, body, db, user, key)


SubscriptionStatus = Literal[SUBSCRIPTION_STATUSES]  # type: ignore[valid-type]


@subscriptions.get("", response_model=Page[SubscriptionRead], summary="Your subscriptions")
def list_subscriptions(
    db: DbSession, user: CurrentUser, page: PageQuery, status: SubscriptionStatus | None = None
) -> Page[SubscriptionRead]:
    items, cursor = subs.list_subscriptions(db=db, params=page, user_id=user.id, status=status)
    return page_of(SubscriptionRead, items, cursor)


@subscriptions.get("/{subscription_id}", response_model=SubscriptionRead)
def get_subscription(sub: VisibleSubscription) -> SubscriptionRead:
    return SubscriptionRead.model_validate(sub)


@subscriptions.post(
    "/{subscription_id}/cancel", response_model=SubscriptionRead, summary="Stop renewal"
)
def cancel_subscription(sub: ChangeableSubscription, db: DbSession) -> SubscriptionRead:
    return SubscriptionRead.model_validate(flows.cancel_subscription(db=db, sub=sub))


TransactionType = Literal["payment", "credit", "refund", "charge", "debit"]
TransactionStatus = Literal["pending", "completed", "failed", "cancelled"]


@admin.get("/transactions", response_model=Page[AdminTransactionRead], summary="The whole ledger")
def admin_transactions(
    db: ReadDbSession,
    user: StaffUser,
    page: PageQuery,
    user_id: uuid.UUID | None = None,
    type: TransactionType | None = None,
    status: TransactionStatus | None = None,
    subscription_id: uuid.UUID | None = None,
    provider: Annotated[str | None, Query(max_length=50)] = None,
    since: Annotated[UTCInput | None, Query(description="created at or after")] = None,
    until: Annotated[UTCInput | None, Query(description="created before")] = None,
) -> Page[AdminTransactionRead]:
    items, cursor = service.list_all_transactions(
        db=db,
        params=page,
        user_id=user_id,
        type_=type,
        status=status,
        subscription_id=subscription_id,
        provider=provider,
        since=since,
        until=until,
    )
    return page_of(AdminTransactionRead, items, cursor)


@admin.get("/subscriptions", response_model=Page[AdminSubscriptionRead])
def admin_subscriptions(
    db: DbSession,
    user: StaffUser,
    page: PageQuery,
    user_id: uuid.UUID | None = None,
    status: SubscriptionStatus | None = None,
    instance_id: uuid.UUID | None = None,
    order: Literal["newest", "past_due_first"] = "newest",
) -> Page[AdminSubscriptionRead]:
    items, cursor = subs.list_subscriptions(
        db=db,
        params=page,
        user_id=user_id,
        status=status,
        instance_id=instance_id,
        past_due_first=order == "past_due_first",
    )
    return page_of(AdminSubscriptionRead, items, cursor)
