"""``/admin``: the staff overview."""

from __future__ import annotations

from fastapi import Request
from fastapi.routing import APIRouter
from starlette.responses import Response

from vmcloud.web.admin.access import StaffPanelUser, page

router = APIRouter(include_in_schema=False)


@router.get("/admin")
def overview_page(request: Request, user: StaffPanelUser) -> Response:
    return page(request, "admin/overview.html", user, area="overview")
