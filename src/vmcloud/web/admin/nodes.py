"""``/admin/nodes`` (admins only, like the API's node routes): the hypervisor fleet with its
health, last contact and allocation against capacity, live; adding a node, editing its
capacity, and enabling, disabling or draining it, through the API's node services."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts.models import User
from vmcloud.catalog import service as catalog
from vmcloud.catalog.models import Region
from vmcloud.compute import nodes
from vmcloud.compute.models import Node
from vmcloud.compute.schemas import NodeCreate, NodeRead, NodeUpdate
from vmcloud.core import idempotency
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ProblemError
from vmcloud.core.pagination import MAX_LIMIT, PageParams
from vmcloud.db.session import DbSession
from vmcloud.web import live
from vmcloud.web.admin.access import AdminPanelUser, page, stream
from vmcloud.web.forms import FormError, check_nonce, parse, settle
from vmcloud.web.render import csrf_token, fragment, redirect

router = APIRouter(include_in_schema=False)

Text = Annotated[str, Form(max_length=500)]
Cursor = Annotated[str, Query(max_length=2000)]
CREATE_FIELDS = (
    *("name", "region", "uri", "driver", "storage_dir", "network_mode", "bridge"),
    *("virt_type", "vcpus", "memory_mb", "disk_gb"),
    *("cpu_overcommit", "ram_overcommit", "disk_overcommit", "status"),
)
EDIT_FIELDS = CREATE_FIELDS[-7:]  # capacity, overcommit and status: what NodeUpdate takes
STATUSES = ("enabled", "maintenance", "disabled")


@dataclass(frozen=True)
class Bar:
    label: str
    used: int
    capacity: int  # with overcommit
    physical: int
    overcommit: Decimal
    unit: str

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used / self.capacity)) if self.capacity else 0


@dataclass(frozen=True)
class NodeView:
    node: Node
    region: str
    instances: int
    bars: tuple[Bar, ...]


def _bar(label: str, used: int, physical: int, overcommit: Decimal, unit: str) -> Bar:
    return Bar(label, used, int(physical * overcommit), physical, overcommit, unit)


def _views(db: Session, found: list[Node]) -> list[NodeView]:
    regions = {region.id: region.name for region in _regions(db)}
    counts = nodes.instance_counts(db=db, node_ids=[node.id for node in found])
    return [
        NodeView(
            node=node,
            region=regions.get(node.region_id, "—"),
            instances=counts.get(node.id, 0),
            bars=(
                _bar("vCPU", node.allocated_vcpus, node.vcpus, node.cpu_overcommit, ""),
                _bar("RAM", node.allocated_memory_mb, node.memory_mb, node.ram_overcommit, "MB"),
                _bar("Disk", node.allocated_disk_gb, node.disk_gb, node.disk_overcommit, "GB"),
            ),
        )
        for node in found
    ]


def _regions(db: Session) -> list[Region]:
    found, _ = catalog.list_regions(db=db, params=PageParams(limit=MAX_LIMIT))
    return found


def _list_context(db: Session, cursor: str) -> dict[str, Any]:
    found, next_cursor = nodes.list_nodes(db=db, params=PageParams(cursor=cursor or None))
    return {"views": _views(db, found), "next_cursor": next_cursor}


@router.get("/admin/nodes")
def nodes_page(
    request: Request, db: DbSession, user: AdminPanelUser, cursor: Cursor = ""
) -> Response:
    context = _list_context(db, cursor)
    query = f"?{urlencode({'cursor': cursor})}" if cursor else ""
    return page(
        request,
        "admin/nodes/list.html",
        user,
        {**context, "stream_url": f"/admin/nodes/stream{query}", "statuses": STATUSES},
        area="nodes",
    )


@router.get("/admin/nodes/stream")
async def nodes_stream(request: Request, _: AdminPanelUser, cursor: Cursor = "") -> Response:
    token = csrf_token(request)

    def resync(db: Session) -> str | None:
        context = _list_context(db, cursor)
        return fragment(
            "admin/nodes/_list.html", **context, statuses=STATUSES, csrf=token, oob=True
        )

    def render_event(db: Session, event: live.Event) -> str | None:
        return resync(db) if event.get("kind") in ("node", "node_seen") else None

    return await stream(request, resync=resync, render=render_event, admin_only=True)


# -- add ---------------------------------------------------------------------------------------


def _form_page(
    request: Request,
    db: Session,
    user: User,
    allow_fake: bool,
    form: dict[str, str],
    node: Node | None = None,
    problem: FormError | None = None,
) -> Response:
    return page(
        request,
        "admin/nodes/form.html",
        user,
        {
            "node": node,
            "form": form,
            "problem": problem,
            "regions": [(r.slug, r.name) for r in _regions(db)] if node is None else [],
            "allow_fake": allow_fake,
            "statuses": STATUSES,
        },
        area="nodes",
        status=problem.status if problem else 200,
    )


NEW_NODE_DEFAULTS = {
    "driver": "libvirt",
    "network_mode": "user",
    "virt_type": "qemu",
    "cpu_overcommit": "4.0",
    "ram_overcommit": "1.0",
    "disk_overcommit": "1.0",
    "status": "enabled",
}


@router.get("/admin/nodes/new")
def new_node_page(
    request: Request, db: DbSession, user: AdminPanelUser, settings: AppSettings
) -> Response:
    return _form_page(request, db, user, settings.allow_fake_driver, dict(NEW_NODE_DEFAULTS))


def _values(form: dict[str, str], fields: tuple[str, ...]) -> dict[str, str]:
    """The form's values for ``fields``, leaving out optional ones left empty (the bridge)."""
    return {name: form[name] for name in fields if form.get(name, "") != "" or name != "bridge"}


@router.post("/admin/nodes/new")
def add_node(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    settings: AppSettings,
    name: Text = "",
    region: Text = "",
    uri: Text = "",
    driver: Text = "",
    storage_dir: Text = "",
    network_mode: Text = "",
    bridge: Text = "",
    virt_type: Text = "",
    vcpus: Text = "",
    memory_mb: Text = "",
    disk_gb: Text = "",
    cpu_overcommit: Text = "",
    ram_overcommit: Text = "",
    disk_overcommit: Text = "",
    status: Text = "",
    nonce: Text = "",
) -> Response:
    form = {k: v for k, v in locals().items() if k in CREATE_FIELDS}
    allow_fake = settings.allow_fake_driver
    try:
        check_nonce(nonce)
        body = parse(NodeCreate, _values(form, CREATE_FIELDS), lax=True)
        made = idempotency.once(
            db=db,
            user_id=user.id,
            key=f"panel:{nonce}",
            endpoint="POST /admin/nodes",
            body=body,
            status=201,
            produce=lambda: NodeRead.model_validate(
                nodes.create_node(db=db, body=body, allow_fake=allow_fake)
            ),
        )
    except FormError as problem:
        return _form_page(request, db, user, allow_fake, form, problem=problem)
    except ProblemError as exc:
        return _form_page(request, db, user, allow_fake, form, problem=settle(db, exc))
    # A replay (the same form posted again) answers what the first post made.
    added = made.name if isinstance(made, NodeRead) else json.loads(bytes(made.body))["name"]
    return redirect(request, "/admin/nodes", flash=f"Node {added} added.")


# -- edit ----------------------------------------------------------------------------------------


def _form_of(node: Node) -> dict[str, str]:
    return {name: str(getattr(node, name)) for name in EDIT_FIELDS}


@router.get("/admin/nodes/{node_id}")
def edit_node_page(
    request: Request, db: DbSession, user: AdminPanelUser, node_id: uuid.UUID
) -> Response:
    node = nodes.get_node(db=db, node_id=node_id)
    return _form_page(request, db, user, False, _form_of(node), node)


def _update(
    request: Request, db: Session, user: User, node_id: uuid.UUID, form: dict[str, str]
) -> Response | None:
    """Apply ``form`` (NodeUpdate's fields) to the node; the form page with the problem when
    refused, else None."""
    node = nodes.get_node(db=db, node_id=node_id)
    try:
        body = parse(NodeUpdate, form, lax=True)
        nodes.update_node(db=db, node_id=node_id, body=body)
    except FormError as problem:
        return _form_page(request, db, user, False, {**_form_of(node), **form}, node, problem)
    except ProblemError as exc:
        refusal = settle(db, exc)
        node = nodes.get_node(db=db, node_id=node_id)
        return _form_page(request, db, user, False, {**_form_of(node), **form}, node, refusal)
    return None


@router.post("/admin/nodes/{node_id}")
def edit_node(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    node_id: uuid.UUID,
    vcpus: Text = "",
    memory_mb: Text = "",
    disk_gb: Text = "",
    cpu_overcommit: Text = "",
    ram_overcommit: Text = "",
    disk_overcommit: Text = "",
    status: Text = "",
) -> Response:
    form = {k: v for k, v in locals().items() if k in EDIT_FIELDS}
    refused = _update(request, db, user, node_id, form)
    if refused is not None:
        return refused
    return redirect(request, "/admin/nodes", flash="Node saved.")


@router.post("/admin/nodes/{node_id}/status")
def node_status(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    node_id: uuid.UUID,
    status: Text = "",
) -> Response:
    refused = _update(request, db, user, node_id, {"status": status})
    if refused is not None:
        return refused
    node = nodes.get_node(db=db, node_id=node_id)
    return redirect(request, "/admin/nodes", flash=f"Node {node.name} is {node.status}.")
