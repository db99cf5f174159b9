"""Bodies of the catalogue endpoints. ``specs_json``, ``pricing_json`` and ``features_json``
are validated here on every write, so the JSONB columns only ever hold these shapes."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from vmcloud.core.schemas import InputModel, OutputModel, UTCDateTime

SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_MAX_PRICE = Decimal("99999999.99")  # DECIMAL(10,2), the column prices are charged into

Slug = Annotated[str, StringConstraints(pattern=SLUG, min_length=1, max_length=255)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Feature = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Specs(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    vcpus: Annotated[int, Field(gt=0, le=512)]
    memory_mb: Annotated[int, Field(gt=0, le=16 * 1024 * 1024)]
    disk_gb: Annotated[int, Field(gt=0, le=1024 * 1024)]
    bandwidth_gb: Annotated[int, Field(gt=0, le=10**9)] | None = None


def _price(places: int) -> Any:
    # ASCII digits only: \d and Decimal() also take other scripts' digits (Arabic-Indic, …).
    pattern = re.compile(rf"^[0-9]{{1,8}}(\.[0-9]{{1,{places}}})?$")

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"a decimal string with at most {places} decimal places, e.g. '4.00'")
        amount = Decimal(value)
        if amount <= 0 or amount > _MAX_PRICE:
            raise ValueError("must be greater than 0 and at most 99999999.99")
        return value

    return Annotated[str, AfterValidator(check)]


class Pricing(BaseModel):
    """Prices as decimal strings (JSON numbers are refused: they become floats on the way)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    hourly: _price(6) | None = None  # type: ignore[valid-type]
    monthly: _price(2) | None = None  # type: ignore[valid-type]
    yearly: _price(2) | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _at_least_one(self) -> Pricing:
        if self.hourly is None and self.monthly is None and self.yearly is None:
            raise ValueError("at least one of hourly, monthly, yearly is required")
        return self


class ProductCreate(InputModel):
    name: Name
    slug: Slug
    description: Annotated[str | None, Field(max_length=10_000)] = None
    category: Annotated[str | None, StringConstraints(max_length=100)] = None
    specs_json: Specs
    pricing_json: Pricing
    features_json: Annotated[list[Feature], Field(max_length=50)] = Field(default_factory=list)
    status: Literal["active", "hidden", "archived"] = "active"
    sort_order: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] = 0


class ProductUpdate(InputModel):
    name: Name | None = None
    slug: Slug | None = None
    description: Annotated[str | None, Field(max_length=10_000)] = None
    category: Annotated[str | None, StringConstraints(max_length=100)] = None
    specs_json: Specs | None = None
    pricing_json: Pricing | None = None
    features_json: Annotated[list[Feature], Field(max_length=50)] | None = None
    status: Literal["active", "hidden", "archived"] | None = None
    sort_order: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] | None = None

    @field_validator("name", "slug", "specs_json", "pricing_json", "status", "sort_order")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, but not set to null")
        return value


class ProductRead(OutputModel):
    id: uuid.UUID
    name: str
    slug: str
    description: str | None
    category: str | None
    specs_json: dict[str, Any]
    pricing_json: dict[str, Any]
    features_json: list[str] | None
    status: str | None
    sort_order: int | None
    created_at: UTCDateTime | None
    updated_at: UTCDateTime | None


class RegionRead(OutputModel):
    id: uuid.UUID
    slug: str
    name: str
    description: str | None
    status: str


class ImageRead(OutputModel):
    id: uuid.UUID
    slug: str
    name: str
    distro: str
    version: str
    min_disk_gb: int
    status: str
