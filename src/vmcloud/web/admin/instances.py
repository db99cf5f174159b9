"""``/admin/instances``: every customer's instances, filtered by user, status and node as the
API's ``GET /admin/instances`` is (its own service and pages), live; admins power them on and
off and delete them through the services the API's instance routes call for an admin."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import service as accounts
from vmcloud.accounts.deps import is_admin
from vmcloud.accounts.models import User
from vmcloud.billing import flows
from vmcloud.compute import nodes
from vmcloud.compute import service as compute
from vmcloud.compute.models import INSTANCE_STATUSES
from vmcloud.core.errors import ProblemError
from vmcloud.core.pagination import PageParams
from vmcloud.db.session import DbSession
from vmcloud.web import live
from vmcloud.web.admin.access import AdminPanelUser, StaffPanelUser, page, stream
from vmcloud.web.forms import FormError, settle
from vmcloud.web.render import csrf_token, fragment, redirect
from vmcloud.web.session import safe_next

router = APIRouter(include_in_schema=False)

Text = Annotated[str, Query(max_length=320)]
Cursor = Annotated[str, Query(max_length=2000)]
Action = Literal["start", "stop", "reboot"]
LIST = "admin/instances_list.html"


@dataclass(frozen=True)
class Filters:
    user: str = ""
    status: str = ""
    node: str = ""
    cursor: str = ""

    def query(self, **changes: str) -> str:
        values = {**self.__dict__, **changes}
        return urlencode({k: v for k, v in values.items() if v})


@dataclass
class Listing:
    rows: list[Any]
    owners: dict[uuid.UUID, str]
    next_cursor: str | None
    problem: FormError | None = None


def _user_id(db: Session, ref: str) -> uuid.UUID | None:
    """The user a filter names: by id, email or username."""
    try:
        return uuid.UUID(ref)
    except ValueError:
        found = accounts.find_by_login(db=db, login=ref)
        return found.id if found else None


def listing(db: Session, filters: Filters) -> Listing:
    """A page of instances as the API's admin list gives it, with each owner's username."""
    if filters.status and filters.status not in INSTANCE_STATUSES:
        return Listing([], {}, None, FormError(fields={"status": "no such status"}))
    user_id = _user_id(db, filters.user.strip()) if filters.user.strip() else None
    if filters.user.strip() and user_id is None:
        return Listing([], {}, None, FormError(fields={"user": "no such user"}, status=200))
    try:
        rows, cursor = compute.list_instance_views(
            db=db,
            params=PageParams(cursor=filters.cursor or None),
            staff=True,
            user_id=user_id,
            status=filters.status or None,
            node=filters.node.strip() or None,
        )
    except ProblemError as exc:  # a cursor that is not one of ours
        return Listing([], {}, None, settle(db, exc))
    owners = accounts.usernames_of(db=db, user_ids={row.user_id for row in rows})
    return Listing(list(rows), owners, cursor)


def _context(filters: Filters, found: Listing, csrf: str) -> dict[str, Any]:
    return {
        "found": found,
        "filters": filters,
        "here": "/admin/instances" + (f"?{filters.query()}" if filters.query() else ""),
        "actions": compute.ACTIONS,
        "not_deletable": compute.NOT_DELETABLE,
        "csrf": csrf,
    }


def _page(
    request: Request,
    db: Session,
    user: User,
    filters: Filters,
    problem: FormError | None = None,
) -> Response:
    found = listing(db, filters)
    shown = problem or found.problem
    return page(
        request,
        "admin/instances.html",
        user,
        {
            **_context(filters, found, csrf_token(request)),
            "statuses": INSTANCE_STATUSES,
            "node_names": nodes.node_names(db=db),
            "problem": shown,
            "stream_url": "/admin/instances/stream"
            + (f"?{request.url.query}" if request.url.query else ""),
        },
        area="instances",
        status=shown.status if shown else 200,
    )


@router.get("/admin/instances")
def instances_page(
    request: Request,
    db: DbSession,
    user: StaffPanelUser,
    user_ref: Annotated[str, Query(alias="user", max_length=320)] = "",
    status: Text = "",
    node: Text = "",
    cursor: Cursor = "",
) -> Response:
    return _page(request, db, user, Filters(user_ref, status, node, cursor))


@router.get("/admin/instances/stream")
async def instances_stream(
    request: Request,
    user: StaffPanelUser,
    user_ref: Annotated[str, Query(alias="user", max_length=320)] = "",
    status: Text = "",
    node: Text = "",
    cursor: Cursor = "",
) -> Response:
    filters, csrf = Filters(user_ref, status, node, cursor), csrf_token(request)
    admin = is_admin(user)  # the stream ends when the role changes (access.stream)

    def resync(db: Session) -> str | None:
        found = listing(db, filters)
        return fragment(LIST, **_context(filters, found, csrf), can_admin=admin, oob=True)

    def render_event(db: Session, event: live.Event) -> str | None:
        return resync(db) if event.get("kind") == "instance" else None

    return await stream(request, resync=resync, render=render_event)


def _back(next: str) -> str:
    target = safe_next(next or "/admin/instances")
    return target if target.startswith("/admin/instances") else "/admin/instances"


@router.post("/admin/instances/{instance_id}/power")
def instance_power(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    instance_id: uuid.UUID,
    action: Annotated[Action, Form()],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    instance = compute.get_changeable_instance(db=db, instance_id=instance_id, user=user)
    try:
        compute.request_action(db=db, instance=instance, action=action)
    except ProblemError as exc:
        return _page(request, db, user, Filters(), settle(db, exc))
    return redirect(request, _back(next), flash=f"{instance.name}: {action} requested.")


@router.post("/admin/instances/{instance_id}/delete")
def instance_delete(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    instance_id: uuid.UUID,
    confirm_name: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    instance = compute.get_changeable_instance(db=db, instance_id=instance_id, user=user)
    if confirm_name != instance.name:
        problem = FormError(
            fields={"confirm_name": "type the instance's name exactly"},
            message=f"The name you typed does not match {instance.name}; nothing was deleted.",
        )
        return _page(request, db, user, Filters(), problem)
    name = instance.name
    try:
        flows.delete_instance(db=db, instance=instance)
    except ProblemError as exc:
        return _page(request, db, user, Filters(), settle(db, exc))
    return redirect(request, _back(next), flash=f"{name} is being deleted.")
