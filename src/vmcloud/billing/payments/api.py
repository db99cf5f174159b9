"""Routes: top-ups, provider webhooks, the sandbox checkout page, staff refunds and debits."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/billing", tags=["billing"])
admin = APIRouter(prefix="/admin", tags=["admin: billing"])
# Pages outside /api/v1 (the sandbox provider's checkout page).
pages = APIRouter(include_in_schema=False)
