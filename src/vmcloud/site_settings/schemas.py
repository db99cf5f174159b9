"""Bodies of the settings endpoints."""

from __future__ import annotations

from typing import Any

from vmcloud.core.schemas import InputModel, OutputModel, UTCDateTime


class SettingUpdate(InputModel):
    value: Any


class SettingAdminRead(OutputModel):
    key: str
    value: Any
    type: str
    category: str | None
    description: str | None
    is_public: bool
    updated_at: UTCDateTime | None
