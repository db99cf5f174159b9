"""Route: the audit trail, for admins."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from vmcloud.accounts.deps import AdminUser
from vmcloud.audit import service
from vmcloud.audit.schemas import AuditLogRead
from vmcloud.core.pagination import Page, PageQuery, page_of
from vmcloud.core.schemas import UTCInput
from vmcloud.db.session import ReadDbSession

router = APIRouter(prefix="/admin/audit-logs", tags=["admin: audit"])


@router.get("", response_model=Page[AuditLogRead], summary="The audit trail, newest first")
def list_audit_logs(
    db: ReadDbSession,
    _: AdminUser,
    page: PageQuery,
    user_id: uuid.UUID | None = None,
    entity_type: Annotated[str | None, Query(max_length=100)] = None,
    entity_id: uuid.UUID | None = None,
    action: Annotated[str | None, Query(max_length=255)] = None,
    since: UTCInput | None = None,
    until: UTCInput | None = None,
) -> Page[AuditLogRead]:
    where = service.LogFilter(
        user_id=user_id,
        entity_type=entity_type,
        entity_id=entity_id,
        action=action,
        since=since,
        until=until,
    )
    items, cursor = service.list_logs(db=db, params=page, where=where)
    return page_of(AuditLogRead, items, cursor)
