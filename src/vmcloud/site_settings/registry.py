"""Rules for the values of known settings, beyond their type.

A setting not listed here (one an operator added) is checked against its type only.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, EmailStr, Field, StringConstraints, TypeAdapter


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


# Money is kept with exactly two decimals, so "12" is stored and shown as "12.00".
Amount = Annotated[
    Decimal, Field(ge=0, le=Decimal("99999999.99"), decimal_places=2), AfterValidator(_cents)
]
PositiveAmount = Annotated[
    Decimal, Field(gt=0, le=Decimal("99999999.99"), decimal_places=2), AfterValidator(_cents)
]
Label = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
MimeType = Annotated[str, StringConstraints(pattern=r"^[a-z0-9.+-]+/[a-z0-9.+-]+$")]


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("items must be unique")
    return values


RULES: dict[str, TypeAdapter[Any]] = {
    "site.name": TypeAdapter(Label),
    "site.support_email": TypeAdapter(EmailStr),
    "auth.registration_enabled": TypeAdapter(bool),
    "billing.currency": TypeAdapter(Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]),
    "billing.grace_days": TypeAdapter(Annotated[int, Field(ge=0, le=365)]),
    "billing.hourly_min_balance": TypeAdapter(Amount),
    "billing.prorated_refunds": TypeAdapter(bool),
    "billing.topup_min": TypeAdapter(PositiveAmount),
    "billing.topup_max": TypeAdapter(PositiveAmount),
    "billing.low_balance_warning": TypeAdapter(Amount),
    "billing.payment_providers": TypeAdapter(
        Annotated[
            list[Annotated[str, StringConstraints(pattern=r"^(sandbox|stripe|manual)$")]],
            AfterValidator(_unique),
        ]
    ),
    "compute.max_instances_per_user": TypeAdapter(Annotated[int, Field(ge=0, le=100_000)]),
    "compute.default_region": TypeAdapter(
        Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]
    ),
    # Sampling runs from a once-a-minute job: intervals are whole minutes or more.
    "compute.metrics_interval_seconds": TypeAdapter(Annotated[int, Field(ge=60, le=3600)]),
    "compute.metrics_retention_days": TypeAdapter(Annotated[int, Field(ge=1, le=3650)]),
    "support.categories": TypeAdapter(
        Annotated[list[Label], Field(min_length=1, max_length=50), AfterValidator(_unique)]
    ),
    "support.attachment_max_bytes": TypeAdapter(Annotated[int, Field(ge=1, le=100 * 1024**2)]),
    "support.attachment_max_count": TypeAdapter(Annotated[int, Field(ge=0, le=20)]),
    "support.attachment_types": TypeAdapter(
        Annotated[list[MimeType], Field(max_length=100), AfterValidator(_unique)]
    ),
    "support.auto_close_days": TypeAdapter(Annotated[int, Field(ge=0, le=365)]),
}

# Pairs that must stay ordered: (lower, upper).
ORDERED = [("billing.topup_min", "billing.topup_max")]
