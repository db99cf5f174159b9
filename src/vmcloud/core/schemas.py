"""Base Pydantic models: strict input (unknown fields are 422), API-shaped output."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, field_validator

from vmcloud.core.clock import isoformat_z

# Times leave the API as ISO 8601 UTC with "Z"; money as a decimal string, never a float.
UTCDateTime = Annotated[datetime, PlainSerializer(isoformat_z, return_type=str)]
Money = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.2f}", return_type=str)]


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
