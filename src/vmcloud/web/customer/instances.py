"""The customer's instances: the list (home) and one instance's page, with their live streams
and the forms that act on an instance (power, rename, delete) through the same services the
API routes call. Ordering is in ``instances_order``."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import Response

from vmcloud.accounts.models import User
from vmcloud.billing import flows
from vmcloud.compute import service as compute
from vmcloud.compute.models import INSTANCE_STATUSES
from vmcloud.compute.schemas import InstanceUpdate
from vmcloud.core.errors import ProblemError
from vmcloud.db.session import DbSession
from vmcloud.web import live
from vmcloud.web.customer import instances_views as views
from vmcloud.web.forms import FormError, parse, settle
from vmcloud.web.render import csrf_token, redirect, render
from vmcloud.web.session import LoginRequiredError, PanelUser, cookie_secret, login_of, safe_next

router = APIRouter(include_in_schema=False)

Status = Literal[INSTANCE_STATUSES]  # type: ignore[valid-type]
Search = Annotated[str, Query(max_length=100)]
Action = Literal["start", "stop", "reboot"]


@router.get("/instances")
def instance_list(
    request: Request, db: DbSession, user: PanelUser, status: Status | None = None, q: Search = ""
) -> Response:
    search = q.strip()
    return render(
        request,
        "instances/list.html",
        {
            "section": "instances",
            "instances": views.list_views(db, user.id, status, search),
            "filtered": bool(status or search),
            "status": status or "",
            "q": search,
            "statuses": INSTANCE_STATUSES,
            "low": views.low_balance(db, user),
            "stream_url": "/instances/stream"
            + (f"?{request.url.query}" if request.url.query else ""),
        },
    )


def stream_user(db: Session, request: Request) -> User | None:
    """The stream's user, read again in each render's own session (None once logged out)."""
    login = login_of(db, cookie_secret(request))
    return login.user if login else None


@router.get("/instances/stream")
async def instance_list_stream(
    request: Request, status: Status | None = None, q: Search = ""
) -> Response:
    search, csrf = q.strip(), csrf_token(request)

    def resync(db: Session) -> str | None:
        user = stream_user(db, request)
        if user is None:
            return None
        return views.list_fragment(db, user, status, search, csrf) + views.banner_fragment(db, user)

    def render_event(db: Session, event: live.Event) -> str | None:
        user = stream_user(db, request)
        if user is None:
            return None
        if event.get("kind") == "instance":
            return views.list_fragment(db, user, status, search, csrf)
        if event.get("kind") == "balance":
            return views.banner_fragment(db, user)
        return None

    return await live.stream(request, resync=resync, render=render_event)


def _detail(
    request: Request,
    db: Session,
    user: User,
    instance_id: uuid.UUID,
    problem: FormError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    instance = views.owned(db, user, instance_id)
    currency = views.currency_of(db)
    return render(
        request,
        "instances/detail.html",
        {
            "section": "instances",
            "view": views.view_of(db, instance, currency),
            "activity": views.activity_of(db, instance.id),
            "billing": views.billing_of(db, instance, currency),
            "problem": problem,
            "form": form or {},
        },
        status=problem.status if problem else 200,
        headers=problem.headers if problem else None,
    )


@router.get("/instances/{instance_id}")
def instance_detail(
    request: Request, db: DbSession, user: PanelUser, instance_id: uuid.UUID
) -> Response:
    return _detail(request, db, user, instance_id)


def check_visible(request: Request, instance_id: uuid.UUID) -> None:
    """404 before a stream opens on another user's instance (the login is checked again by
    the stream itself)."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    with factory() as db:
        user = stream_user(db, request)
        if user is None:
            raise LoginRequiredError()
        views.owned(db, user, instance_id)


@router.get("/instances/{instance_id}/stream")
async def instance_detail_stream(request: Request, instance_id: uuid.UUID) -> Response:
    csrf = csrf_token(request)
    await live.read_db(request, check_visible, request, instance_id)

    def resync(db: Session) -> str | None:
        user = stream_user(db, request)
        return views.detail_fragment(db, user, instance_id, csrf) if user else None

    def render_event(db: Session, event: live.Event) -> str | None:
        if event.get("kind") != "instance" or event.get("id") != str(instance_id):
            return None
        return resync(db)

    return await live.stream(
        request, resync=resync, render=render_event, follows=("instance", instance_id)
    )


@router.post("/instances/{instance_id}/power")
def instance_power(
    request: Request,
    db: DbSession,
    user: PanelUser,
    instance_id: uuid.UUID,
    action: Annotated[Action, Form()],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    instance = views.owned(db, user, instance_id, change=True)
    try:
        compute.request_action(db=db, instance=instance, action=action)
    except ProblemError as exc:
        return _detail(request, db, user, instance_id, settle(db, exc))
    target = safe_next(next or f"/instances/{instance_id}")
    return redirect(request, target, flash=f"{instance.name}: {action} requested.")


@router.post("/instances/{instance_id}/rename")
def instance_rename(
    request: Request,
    db: DbSession,
    user: PanelUser,
    instance_id: uuid.UUID,
    name: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    instance = views.owned(db, user, instance_id, change=True)
    try:
        body = parse(InstanceUpdate, {"name": name})
        compute.rename_instance(db=db, instance=instance, name=body.name)
    except FormError as problem:
        return _detail(request, db, user, instance_id, problem, {"name": name})
    except ProblemError as exc:
        return _detail(request, db, user, instance_id, settle(db, exc), {"name": name})
    return redirect(request, f"/instances/{instance_id}", flash=f"Renamed to {body.name}.")


@router.post("/instances/{instance_id}/delete")
def instance_delete(
    request: Request,
    db: DbSession,
    user: PanelUser,
    instance_id: uuid.UUID,
    confirm_name: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    instance = views.owned(db, user, instance_id, change=True)
    if confirm_name != instance.name:
        problem = FormError(
            fields={"confirm_name": "type the instance's name exactly"},
            message="The name you typed does not match; nothing was deleted.",
        )
        return _detail(request, db, user, instance_id, problem)
    name = instance.name
    try:
        flows.delete_instance(db=db, instance=instance)
    except ProblemError as exc:
        return _detail(request, db, user, instance_id, settle(db, exc))
    return redirect(request, "/instances", flash=f"{name} is being deleted.")
