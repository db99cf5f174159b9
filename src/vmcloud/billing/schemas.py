"""Bodies of the billing endpoints."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any

from pydantic import StringConstraints, field_validator

from vmcloud.core.schemas import InputModel, Money, MoneyText, OutputModel, UTCDateTime


class Balance(OutputModel):
    balance: Money
    currency: str


class TransactionRead(OutputModel):
    id: uuid.UUID
    subscription_id: uuid.UUID | None
    amount: Money
    currency: str | None
    type: str
    status: str | None
    payment_method: str | None
    payment_provider: str | None
    metadata_json: dict[str, Any] | None
    processed_at: UTCDateTime | None
    created_at: UTCDateTime | None


class CreditCreate(InputModel):
    amount: MoneyText
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class DebitCreate(InputModel):
    amount: MoneyText
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class SubscriptionRead(OutputModel):
    id: uuid.UUID
    instance_id: uuid.UUID | None
    type: str
    price: Money
    # Hourly: the exact rate per hour (may have up to six decimals), the fraction of a cent
    # accrued but not yet charged, and this month's charges so far (never above monthly_cap).
    rate: str | None
    accrued: str
    month_charged: Money
    monthly_cap: Money | None
    currency: str | None
    status: str | None
    auto_renew: bool | None
    period_start: UTCDateTime
    period_end: UTCDateTime
    amount_due: Money | None
    past_due_since: UTCDateTime | None
    cancelled_at: UTCDateTime | None
    created_at: UTCDateTime | None

    @field_validator("rate", "accrued", mode="before")
    @classmethod
    def _exact(cls, value: Any) -> Any:
        if isinstance(value, Decimal):
            return format(value.normalize(), "f") if value else "0"
        return value


class AdminTransactionRead(TransactionRead):
    user_id: uuid.UUID
    payment_provider: str | None
    provider_transaction_id: str | None
    period_key: str | None
    refund_of: uuid.UUID | None


class AdminSubscriptionRead(SubscriptionRead):
    user_id: uuid.UUID
