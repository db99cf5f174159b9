"""``/admin/ip-pools`` (admin only): pools by region with their usage, the add form, and one
pool's page (reserved addresses, leases, enable/disable, gateway). The routes call the
services the ``/api/v1/admin/ip-pools`` routes call; counts follow instance events live."""

from __future__ import annotations

import json
import uuid
from itertools import groupby
from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRouter
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts.models import User
from vmcloud.catalog import service as catalog
from vmcloud.compute import ip_pools
from vmcloud.compute.schemas import IpPoolAddress, IpPoolCreate, IpPoolRead, IpPoolUpdate
from vmcloud.core import idempotency
from vmcloud.core.errors import ProblemError
from vmcloud.core.pagination import MAX_LIMIT, PageParams
from vmcloud.db.session import DbSession
from vmcloud.web.admin.access import AdminPanelUser, page, stream
from vmcloud.web.forms import FormError, check_nonce, parse, settle
from vmcloud.web.live import Event
from vmcloud.web.render import csrf_token, fragment, redirect

router = APIRouter(prefix="/admin/ip-pools", include_in_schema=False)

Text = Annotated[str, Form(max_length=100)]
Cursor = Annotated[str | None, Query(max_length=1024)]
LIST = "/admin/ip-pools"


# -- reading ------------------------------------------------------------------------------


def pools_by_region(db: Session) -> dict[str, Any]:
    """Every pool (a page of the API's largest size), grouped by region."""
    views, next_cursor = ip_pools.list_pools(db=db, params=PageParams(limit=MAX_LIMIT))
    views.sort(key=lambda v: (v.region, v.name))
    regions = [(region, list(group)) for region, group in groupby(views, key=lambda v: v.region)]
    return {"regions": regions, "more": next_cursor is not None}


def pool_state(db: Session, pool_id: uuid.UUID, cursor: str | None) -> dict[str, Any]:
    pool = ip_pools.get_pool(db=db, pool_id=pool_id)
    leases, next_cursor = ip_pools.list_leases(db=db, pool=pool, params=PageParams(cursor=cursor))
    return {
        "pool": ip_pools.view(db=db, pool=pool),
        "leases": leases,
        "cursor": cursor,
        "next_cursor": next_cursor,
    }


def _regions(db: Session) -> list[Any]:
    regions, _ = catalog.list_regions(db=db, params=PageParams(limit=MAX_LIMIT))
    return [r for r in regions if r.status == "active"]


def _list_page(
    request: Request,
    db: Session,
    user: User,
    *,
    form: dict[str, str] | None = None,
    problem: FormError | None = None,
) -> Response:
    context = {
        **pools_by_region(db),
        "region_choices": _regions(db),
        "form": form or {},
        "problem": problem,
    }
    status = problem.status if problem else 200
    return page(request, "admin/ip_pools/list.html", user, context, area="ip-pools", status=status)


def _pool_page(
    request: Request,
    db: Session,
    user: User,
    pool_id: uuid.UUID,
    *,
    cursor: str | None = None,
    problem: FormError | None = None,
    failed: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    context = {
        **pool_state(db, pool_id, cursor),
        "problem": problem,
        "failed": failed,
        "form": form or {},
    }
    status = problem.status if problem else 200
    return page(
        request, "admin/ip_pools/detail.html", user, context, area="ip-pools", status=status
    )


# -- the list -----------------------------------------------------------------------------


@router.get("")
def pools_page(request: Request, db: DbSession, user: AdminPanelUser) -> Response:
    return _list_page(request, db, user)


@router.get("/stream")
async def pools_stream(request: Request, _: AdminPanelUser) -> Response:
    def resync(db: Session) -> str:
        return fragment("admin/ip_pools/_pools.html", oob=True, **pools_by_region(db))

    def render(db: Session, event: Event) -> str | None:
        return resync(db) if event["kind"] == "instance" else None

    return await stream(request, resync=resync, render=render, admin_only=True)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


@router.post("")
def add_pool(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    name: Text = "",
    region: Text = "",
    cidr: Text = "",
    gateway: Text = "",
    reserved: Annotated[str, Form(max_length=40_000)] = "",
    nonce: Text = "",
) -> Response:
    form = {"name": name, "region": region, "cidr": cidr, "gateway": gateway, "reserved": reserved}
    try:
        check_nonce(nonce)
        values: dict[str, Any] = {"name": name, "region": region, "cidr": cidr}
        values["reserved"] = _lines(reserved)
        if gateway.strip():
            values["gateway"] = gateway
        body = parse(IpPoolCreate, values)
        made = idempotency.once(
            db=db,
            user_id=user.id,
            key=f"panel:{nonce}",
            endpoint="POST /admin/ip-pools",
            body=body,
            status=201,
            produce=lambda: IpPoolRead.model_validate(
                ip_pools.view(db=db, pool=ip_pools.create_pool(db=db, body=body))
            ),
        )
    except FormError as problem:
        return _list_page(request, db, user, form=form, problem=problem)
    except ProblemError as exc:
        return _list_page(request, db, user, form=form, problem=settle(db, exc))
    pool_id = json.loads(bytes(made.body))["id"] if isinstance(made, JSONResponse) else made.id
    return redirect(request, f"{LIST}/{pool_id}", flash=f"The pool {body.name!r} is added.")


# -- one pool -----------------------------------------------------------------------------


@router.get("/{pool_id}")
def pool_page(
    request: Request, db: DbSession, user: AdminPanelUser, pool_id: uuid.UUID, cursor: Cursor = None
) -> Response:
    return _pool_page(request, db, user, pool_id, cursor=cursor)


@router.get("/{pool_id}/stream")
async def pool_stream(
    request: Request, db: DbSession, _: AdminPanelUser, pool_id: uuid.UUID, cursor: Cursor = None
) -> Response:
    ip_pools.get_pool(db=db, pool_id=pool_id)  # 404 for no such pool
    csrf = csrf_token(request)

    def resync(db: Session) -> str | None:
        try:
            state = pool_state(db, pool_id, cursor)
        except ProblemError:
            return None
        return fragment("admin/ip_pools/_pool_live.html", oob=True, csrf=csrf, **state)

    def render(db: Session, event: Event) -> str | None:
        return resync(db) if event["kind"] == "instance" else None

    return await stream(request, resync=resync, render=render, admin_only=True)


def _act(
    request: Request,
    db: Session,
    user: User,
    pool_id: uuid.UUID,
    which: str,
    form: dict[str, str],
    act: Any,
    done: str,
) -> Response:
    ip_pools.get_pool(db=db, pool_id=pool_id)  # an unknown pool: 404
    try:
        act()
    except FormError as refused:
        return _pool_page(request, db, user, pool_id, problem=refused, failed=which, form=form)
    except ProblemError as exc:
        settled = settle(db, exc)
        return _pool_page(request, db, user, pool_id, problem=settled, failed=which, form=form)
    return redirect(request, f"{LIST}/{pool_id}", flash=done)


@router.post("/{pool_id}/reserve")
def reserve(
    request: Request, db: DbSession, user: AdminPanelUser, pool_id: uuid.UUID, address: Text = ""
) -> Response:
    def act() -> None:
        body = parse(IpPoolAddress, {"address": address})
        ip_pools.reserve(db=db, pool_id=pool_id, address=body.address)

    form = {"address": address}
    done = f"{address} is reserved: it will not be leased."
    return _act(request, db, user, pool_id, "reserve", form, act, done)


@router.post("/{pool_id}/unreserve")
def unreserve(
    request: Request, db: DbSession, user: AdminPanelUser, pool_id: uuid.UUID, address: Text = ""
) -> Response:
    def act() -> None:
        body = parse(IpPoolAddress, {"address": address})
        ip_pools.unreserve(db=db, pool_id=pool_id, address=body.address)

    done = f"{address} is no longer reserved."
    return _act(request, db, user, pool_id, "unreserve", {}, act, done)


@router.post("/{pool_id}/status")
def set_status(
    request: Request, db: DbSession, user: AdminPanelUser, pool_id: uuid.UUID, status: Text = ""
) -> Response:
    def act() -> None:
        body = parse(IpPoolUpdate, {"status": status})
        ip_pools.update_pool(db=db, pool_id=pool_id, body=body)

    done = "The pool is disabled: no new leases." if status == "disabled" else "The pool is active."
    return _act(request, db, user, pool_id, "status", {}, act, done)


@router.post("/{pool_id}/gateway")
def set_gateway(
    request: Request, db: DbSession, user: AdminPanelUser, pool_id: uuid.UUID, gateway: Text = ""
) -> Response:
    def act() -> None:
        body = parse(IpPoolUpdate, {"gateway": gateway.strip() or None})
        ip_pools.update_pool(db=db, pool_id=pool_id, body=body)

    form = {"gateway": gateway}
    done = f"The gateway is now {gateway.strip()}." if gateway.strip() else "No gateway now."
    return _act(request, db, user, pool_id, "gateway", form, act, done)
