"""Routes: public settings and their administration."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vmcloud.accounts.deps import AdminUser
from vmcloud.core.pagination import Page
from vmcloud.db.session import DbSession
from vmcloud.site_settings import service
from vmcloud.site_settings.schemas import SettingAdminRead, SettingUpdate

public = APIRouter(tags=["settings"])
admin = APIRouter(prefix="/admin/settings", tags=["admin: settings"])


@public.get("/settings/public", summary="Public settings, typed")
def public_settings(db: DbSession) -> dict[str, Any]:
    return service.public_values(db=db)


@admin.get("", response_model=Page[SettingAdminRead], summary="All settings, typed")
def list_settings(db: DbSession, _: AdminUser) -> Page[SettingAdminRead]:
    items = [SettingAdminRead(**service.admin_view(s)) for s in service.list_settings(db=db)]
    return Page(items=items, next_cursor=None)


@admin.put("/{key}", response_model=SettingAdminRead)
def update_setting(key: str, body: SettingUpdate, db: DbSession, _: AdminUser) -> SettingAdminRead:
    setting = service.update_setting(db=db, key=key, value=body.value)
    return SettingAdminRead(**service.admin_view(setting))
