"""Writing the audit trail. Rows go into the caller's transaction: an action and its audit row
commit or roll back together."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from vmcloud.audit.models import AuditLog
from vmcloud.core.net import RequestMeta

REDACTED = "[redacted]"
# Any key containing one of these is a secret, whatever the entity.
_SECRET_MARKERS = ("password", "secret", "token", "hash", "code", "key")
_MAX_USER_AGENT = 1000


def redact(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if any(marker in key.lower() for marker in _SECRET_MARKERS):
            clean[key] = REDACTED
        elif isinstance(value, Mapping):
            clean[key] = redact(value)
        else:
            clean[key] = value
    return clean


def record(
    *,
    db: Session,
    action: str,
    actor_id: uuid.UUID | None,
    meta: RequestMeta | None = None,
    entity_type: str | None = None,
    entity_id: uuid.UUID | None = None,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> AuditLog:
    row = AuditLog(
        user_id=actor_id,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        old_values=redact(old),
        new_values=redact(new),
        ip_address=meta.ip if meta else None,
        user_agent=(meta.user_agent or "")[:_MAX_USER_AGENT] or None if meta else None,
        metadata_json=redact(extra),
    )
    db.add(row)
    db.flush()
    return row
