"""Routes: customers' instances, and the staff views of instances, nodes and IP pools."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, WebSocket, status
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session, sessionmaker

from vmcloud.accounts import api_tokens
from vmcloud.accounts.deps import (
    AdminUser,
    CurrentUser,
    StaffUser,
    VerifiedUser,
    user_for_claims,
)
from vmcloud.accounts.tokens import decode_access_token
from vmcloud.billing import flows
from vmcloud.compute import console, ip_pools, metric_series, nodes, service
from vmcloud.compute.deps import ChangeableInstance, VisibleInstance
from vmcloud.compute.models import INSTANCE_STATUSES, IpPool
from vmcloud.compute.schemas import (
    InstanceAction,
    InstanceAdminRead,
    InstanceCreate,
    InstanceRead,
    InstanceUpdate,
    IpLeaseRead,
    IpPoolAddress,
    IpPoolCreate,
    IpPoolDetail,
    IpPoolRead,
    IpPoolUpdate,
    MetricRead,
    MetricSeries,
    NodeCreate,
    NodeRead,
    NodeUpdate,
)
from vmcloud.config import Settings
from vmcloud.core import idempotency
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ProblemError, UnauthorizedError, problem_response
from vmcloud.core.pagination import Page, PageQuery, page_of, page_response
from vmcloud.core.schemas import UTCInput
from vmcloud.db.session import DbSession, ReadDbSession, read_only

router = APIRouter(prefix="/instances", tags=["instances"])
admin = APIRouter(prefix="/admin", tags=["admin: compute"])

Status = Literal[INSTANCE_STATUSES]  # type: ignore[valid-type]


@router.get("", response_model=Page[InstanceRead], summary="Your instances")
@read_only
def list_instances(
    db: ReadDbSession, user: CurrentUser, page: PageQuery, status: Status | None = None
) -> Response:
    items, cursor = service.list_instance_views(db=db, params=page, user_id=user.id, status=status)
    return page_response(InstanceRead, items, cursor)


@router.post(
    "", response_model=InstanceRead, status_code=status.HTTP_202_ACCEPTED, summary="Order a VM"
)
def create_instance(
    body: InstanceCreate, db: DbSession, user: VerifiedUser, key: idempotency.KeyHeader
) -> InstanceRead | JSONResponse:
    return idempotency.once(
        db=db,
        user_id=user.id,
        key=key,
        endpoint="POST /instances",
        body=body,
        status=status.HTTP_202_ACCEPTED,
        produce=lambda: InstanceRead.model_validate(
            flows.order_instance(db=db, owner=user, body=body)
        ),
    )


@router.get("/{instance_id}", response_model=InstanceRead)
def get_instance(instance: VisibleInstance) -> InstanceRead:
    return InstanceRead.model_validate(instance)


@router.patch("/{instance_id}", response_model=InstanceRead)
def rename_instance(
    instance: ChangeableInstance, body: InstanceUpdate, db: DbSession
) -> InstanceRead:
    return InstanceRead.model_validate(
        service.rename_instance(db=db, instance=instance, name=body.name)
    )


@router.delete("/{instance_id}", response_model=InstanceRead, status_code=202)
def delete_instance(instance: ChangeableInstance, db: DbSession) -> InstanceRead:
    return InstanceRead.model_validate(flows.delete_instance(db=db, instance=instance))


@router.post("/{instance_id}/actions", response_model=InstanceRead, status_code=202)
def instance_action(
    instance: ChangeableInstance, body: InstanceAction, db: DbSession
) -> InstanceRead:
    return InstanceRead.model_validate(
        service.request_action(db=db, instance=instance, action=body.type)
    )


@router.get("/{instance_id}/metrics", response_model=Page[MetricRead])
def instance_metrics(
    instance: VisibleInstance, db: DbSession, page: PageQuery, since: UTCInput | None = None
) -> Page[MetricRead]:
    items, cursor = service.list_metrics(db=db, instance=instance, since=since, params=page)
    return page_of(MetricRead, items, cursor)


@router.get(
    "/{instance_id}/metrics/series", response_model=MetricSeries, summary="Usage for graphs"
)
def instance_metric_series(
    instance: VisibleInstance, db: DbSession, range: metric_series.Range = "1h"
) -> MetricSeries:
    """CPU, memory, and disk and network rates (bytes/s, from the counters) over the last
    ``range``, averaged into at most 361 buckets; clipped to the samples' retention."""
    found = metric_series.series(db=db, instance=instance, range_=range)
    return MetricSeries.model_validate(found)


def _console_target(
    factory: sessionmaker[Session],
    settings: Settings,
    authorization: str,
    instance_id: uuid.UUID,
    first: bool = False,
) -> console.Target | Response:
    """The caller's console, or the problem refusing it: the bearer checks of every API route,
    then the owner's instance (admins reach any; support staff do not type into customers' VMs)."""
    with factory() as db:
        try:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise UnauthorizedError(
                    "Log in and send the access token as 'Authorization: Bearer <token>'.",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            token = token.strip()
            if token.startswith(api_tokens.PREFIX):
                # A personal token types into its owner's own VMs only, within its scopes.
                path = f"{api_tokens.API_PREFIX}/instances/{instance_id}/console"
                user = api_tokens.authenticate(db=db, secret=token, method="POST", path=path)
                instance = service.get_owned_instance(db=db, instance_id=instance_id, user=user)
            else:
                claims = decode_access_token(settings=settings, token=token)
                user = user_for_claims(db, claims)
                instance = service.get_console_instance(db=db, instance_id=instance_id, user=user)
            if first:  # the handshake's check, not a recheck
                console.note_opened(db=db, instance=instance, user=user)
            return console.target(db=db, instance=instance)
        except ProblemError as exc:
            return problem_response(
                status=exc.status,
                type=exc.type,
                title=exc.title,
                detail=exc.detail,
                headers=exc.headers,
            )


@router.websocket("/{instance_id}/console")
async def instance_console(websocket: WebSocket, instance_id: uuid.UUID) -> None:
    """The serial console as a WebSocket (not in the OpenAPI document; see
    docs/architecture.md, "Console API")."""
    factory: sessionmaker[Session] = websocket.app.state.session_factory
    settings: Settings = websocket.app.state.settings
    authorization = websocket.headers.get("authorization", "")[:4096]
    found = await console.read_db(
        websocket, _console_target, factory, settings, authorization, instance_id, True
    )
    if not isinstance(found, console.Target):
        await console.deny(websocket, found)
        return

    async def still_allowed() -> bool:
        again = await console.read_db(
            websocket, _console_target, factory, settings, authorization, instance_id
        )
        return isinstance(again, console.Target)

    await console.serve(websocket, found, still_allowed)


@admin.get("/instances", response_model=Page[InstanceAdminRead], summary="Every instance")
@read_only
def admin_list_instances(
    db: ReadDbSession,
    _: StaffUser,
    page: PageQuery,
    user_id: uuid.UUID | None = None,
    status: Status | None = None,
    node: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """With each instance's node and the capacity it holds there (``/instances`` shows
    neither, to anyone)."""
    items, cursor = service.list_instance_views(
        db=db, params=page, staff=True, user_id=user_id, status=status, node=node
    )
    return page_response(InstanceAdminRead, items, cursor)


@admin.get("/nodes", response_model=Page[NodeRead], summary="Hypervisor nodes")
def list_nodes(db: DbSession, _: AdminUser, page: PageQuery) -> Page[NodeRead]:
    items, cursor = nodes.list_nodes(db=db, params=page)
    return page_of(NodeRead, items, cursor)


@admin.get("/nodes/{node_id}", response_model=NodeRead)
def get_node(node_id: uuid.UUID, db: DbSession, _: AdminUser) -> NodeRead:
    return NodeRead.model_validate(nodes.get_node(db=db, node_id=node_id))


@admin.post("/nodes", response_model=NodeRead, status_code=status.HTTP_201_CREATED)
def create_node(body: NodeCreate, db: DbSession, _: AdminUser, settings: AppSettings) -> NodeRead:
    allow_fake = settings.allow_fake_driver
    return NodeRead.model_validate(nodes.create_node(db=db, body=body, allow_fake=allow_fake))


@admin.patch("/nodes/{node_id}", response_model=NodeRead)
def update_node(node_id: uuid.UUID, body: NodeUpdate, db: DbSession, _: AdminUser) -> NodeRead:
    return NodeRead.model_validate(nodes.update_node(db=db, node_id=node_id, body=body))


# -- IP pools ------------------------------------------------------------------------------


def _pool_read(db: Session, pool: IpPool) -> IpPoolRead:
    return IpPoolRead.model_validate(ip_pools.view(db=db, pool=pool))


@admin.get("/ip-pools", response_model=Page[IpPoolRead], summary="IP pools and their usage")
def list_ip_pools(
    db: DbSession,
    _: AdminUser,
    page: PageQuery,
    region: Annotated[str | None, Query(max_length=255)] = None,
) -> Page[IpPoolRead]:
    """By name; ``region`` (slug or id) keeps one region's."""
    items, cursor = ip_pools.list_pools(db=db, params=page, region=region)
    return page_of(IpPoolRead, items, cursor)


@admin.post("/ip-pools", response_model=IpPoolRead, status_code=status.HTTP_201_CREATED)
def create_ip_pool(body: IpPoolCreate, db: DbSession, _: AdminUser) -> IpPoolRead:
    """A network no other pool overlaps (409), with its gateway and reserved addresses inside
    it (422)."""
    return _pool_read(db, ip_pools.create_pool(db=db, body=body))


@admin.get("/ip-pools/{pool_id}", response_model=IpPoolDetail)
def get_ip_pool(pool_id: uuid.UUID, db: DbSession, _: AdminUser, page: PageQuery) -> IpPoolDetail:
    """The pool and a page of its leases by address (``limit`` and ``cursor`` page them)."""
    pool = ip_pools.get_pool(db=db, pool_id=pool_id)
    leases, cursor = ip_pools.list_leases(db=db, pool=pool, params=page)
    read = _pool_read(db, pool)
    return IpPoolDetail(
        **read.model_dump(),
        leases=[IpLeaseRead.model_validate(lease) for lease in leases],
        leases_next_cursor=cursor,
    )


@admin.patch("/ip-pools/{pool_id}", response_model=IpPoolRead)
def update_ip_pool(
    pool_id: uuid.UUID, body: IpPoolUpdate, db: DbSession, _: AdminUser
) -> IpPoolRead:
    """Enable or disable; change the gateway (null: none). A gateway a live instance holds is
    409."""
    return _pool_read(db, ip_pools.update_pool(db=db, pool_id=pool_id, body=body))


@admin.post("/ip-pools/{pool_id}/reserve", response_model=IpPoolRead)
def reserve_ip(pool_id: uuid.UUID, body: IpPoolAddress, db: DbSession, _: AdminUser) -> IpPoolRead:
    """Never lease this address of the pool (409 while a live instance holds it)."""
    return _pool_read(db, ip_pools.reserve(db=db, pool_id=pool_id, address=body.address))


@admin.post("/ip-pools/{pool_id}/unreserve", response_model=IpPoolRead)
def unreserve_ip(
    pool_id: uuid.UUID, body: IpPoolAddress, db: DbSession, _: AdminUser
) -> IpPoolRead:
    """Lease this address again."""
    return _pool_read(db, ip_pools.unreserve(db=db, pool_id=pool_id, address=body.address))
