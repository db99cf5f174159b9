"""Bodies of the audit endpoints."""

from __future__ import annotations

import uuid
from typing import Any

from vmcloud.core.schemas import OutputModel, UTCDateTime


class AuditLogRead(OutputModel):
    id: uuid.UUID
    user_id: uuid.UUID | None
    action: str
    entity_type: str | None
    entity_id: uuid.UUID | None
    old_values: dict[str, Any] | None
    new_values: dict[str, Any] | None
    ip_address: str | None
    user_agent: str | None
    metadata_json: dict[str, Any] | None
    timestamp: UTCDateTime | None
