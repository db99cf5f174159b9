"""Bodies of the payment endpoints. Money is a decimal string ("12.50"), never a JSON number."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from vmcloud.billing.schemas import TransactionRead
from vmcloud.core.schemas import InputModel, MoneyText, OutputModel

AmountText = MoneyText
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class TopUpCreate(InputModel):
    amount: AmountText
    provider: Annotated[str, StringConstraints(min_length=1, max_length=50)]


class TopUpRead(TransactionRead):
    # Where the customer pays; the entry stays pending until the provider confirms.
    checkout_url: str


class RefundCreate(InputModel):
    # Omitted: whatever of the transaction is not refunded yet.
    amount: AmountText | None = None
    reason: Reason


class WebhookReceived(OutputModel):
    received: bool
