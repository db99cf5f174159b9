"""Route: the audit trail, for admins."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from vmcloud.accounts.deps import AdminUser
from vmcloud.audit.models import AuditLog
from vmcloud.audit.schemas import AuditLogRead
from vmcloud.core.pagination import Page, PageQuery, page_of, paginate
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
    stmt = select(AuditLog)
    if user_id:
        stmt = stmt.where(AuditLog.user_id == user_id)
    if entity_type:
        stmt = stmt.where(AuditLog.entity_type == entity_type)
    if entity_id:
        stmt = stmt.where(AuditLog.entity_id == entity_id)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    if since:
        stmt = stmt.where(AuditLog.timestamp >= since)
    if until:
        stmt = stmt.where(AuditLog.timestamp < until)
    items, cursor = paginate(db, stmt, order_by=(AuditLog.timestamp, AuditLog.id), params=page)
    return page_of(AuditLogRead, items, cursor)
