"""Bodies of the billing endpoints."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import StringConstraints

from vmcloud.core.schemas import InputModel, Money, OutputModel, UTCDateTime


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
    # A decimal string ("12.50"); JSON numbers are refused (they pass through floats).
    amount: Annotated[str, StringConstraints(pattern=r"^\d{1,8}(\.\d{1,2})?$")]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
