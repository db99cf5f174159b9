"""Base Pydantic models: strict input (unknown fields are 422), API-shaped output."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
    field_validator,
)

from vmcloud.core.clock import isoformat_z, to_utc_naive

# Times leave the API as ISO 8601 UTC with "Z"; money as a decimal string, never a float.
UTCDateTime = Annotated[datetime, PlainSerializer(isoformat_z, return_type=str)]
Money = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.2f}", return_type=str)]

# A time in a request (query or body), with any offset or none (UTC), as naive UTC like every
# stored time; one that leaves the calendar when moved to UTC is a 422 on its field.
UTCInput = Annotated[datetime, AfterValidator(to_utc_naive)]
# An amount in a request: a decimal string of ASCII digits ("12.50"). JSON numbers are refused
# (they pass through floats), and so are other scripts' digits, which Decimal() would take.
MoneyText = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,8}(\.[0-9]{1,2})?$")]


def _reject_nul(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key)
            _reject_nul(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            _reject_nul(item)
    elif isinstance(value, BaseModel):
        for item in value.__dict__.values():
            _reject_nul(item)


class InputModel(BaseModel):
    """Request bodies: unknown fields are rejected, never silently dropped or bound; no text
    may carry a NUL character (PostgreSQL cannot store one, and it is never meant)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        _reject_nul(value)
        return value


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
