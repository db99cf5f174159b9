"""Base Pydantic models: strict input (unknown fields are 422), API-shaped output."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer

from vmcloud.core.clock import isoformat_z

# Times leave the API as ISO 8601 UTC with "Z"; money as a decimal string, never a float.
UTCDateTime = Annotated[datetime, PlainSerializer(isoformat_z, return_type=str)]
Money = Annotated[Decimal, PlainSerializer(lambda v: f"{v:.2f}", return_type=str)]


class InputModel(BaseModel):
    """Request bodies: unknown fields are rejected, never silently dropped or bound."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
