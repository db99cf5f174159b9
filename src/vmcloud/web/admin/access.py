"""Who may open a staff page, and the helpers every staff page uses.

The checks are the API's own (``accounts.deps.check_staff``, ``check_admin``): a customer gets
403 on every ``/admin`` page, support gets 403 on the admin-only pages and on every action the
API keeps for admins. Templates decide which buttons to show from ``can_admin`` (the same
predicate), but a form posted anyway is refused by the route's dependency, never by the
template.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.responses import HTMLResponse, Response

from vmcloud.accounts.deps import check_admin, check_staff, is_admin
from vmcloud.accounts.models import STAFF_ROLES, User
from vmcloud.web import live
from vmcloud.web.render import render
from vmcloud.web.session import PanelLogin, panel_user


def staff_user(user: Annotated[User, Depends(panel_user)]) -> User:
    return check_staff(user)


def admin_user(user: Annotated[User, Depends(panel_user)]) -> User:
    return check_admin(user)


StaffPanelUser = Annotated[User, Depends(staff_user)]
AdminPanelUser = Annotated[User, Depends(admin_user)]


def page(
    request: Request,
    template: str,
    user: User,
    context: Mapping[str, Any] | None = None,
    *,
    area: str,
    status: int = 200,
) -> HTMLResponse:
    """A staff page: ``area`` marks its entry in the staff navigation; ``can_admin`` says
    whether to show admin-only actions."""
    values = {"section": "admin", "area": area, "can_admin": is_admin(user), **(context or {})}
    return render(request, template, values, status=status)


def _staff(login: PanelLogin) -> bool:
    return login.user.role in STAFF_ROLES


def _admin(login: PanelLogin) -> bool:
    return is_admin(login.user)


async def stream(
    request: Request,
    *,
    resync: live.Resync,
    render: live.Render | None = None,
    redraw_on: Callable[[live.Event], bool] | None = None,
    admin_only: bool = False,
) -> Response:
    """A staff page's live stream: it hears every user's changes and the staff-only ones
    (node health, audit rows, failed jobs). The route's own dependency has checked the role;
    the stream checks it again every half minute, so a demoted user's stream ends."""
    return await live.stream(
        request,
        resync=resync,
        render=render,
        redraw_on=redraw_on,
        everyone=True,
        allowed=_admin if admin_only else _staff,
    )
