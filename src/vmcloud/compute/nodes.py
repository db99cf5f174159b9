"""Hypervisor nodes: registry, drivers, capacity reservation (the scheduler)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from vmcloud.catalog import service as catalog
from vmcloud.compute import drivers
from vmcloud.compute.drivers.base import ComputeDriver
from vmcloud.compute.models import Instance, Node
from vmcloud.compute.schemas import NodeCreate, NodeUpdate
from vmcloud.core import events
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
)
from vmcloud.core.logging import get_logger
from vmcloud.core.pagination import PageParams, paginate
from vmcloud.db.session import flush_or_raise
from vmcloud.site_settings.registry import Placement

log = get_logger(__name__)

_drivers: dict[tuple[str, ...], ComputeDriver] = {}
_drivers_lock = threading.Lock()


class NoCapacityError(ServiceUnavailableError):
    type = "no-capacity"
    title = "No capacity"


def driver_for(node: Node) -> ComputeDriver:
    """The driver of ``node``: one per node and configuration, kept for the process."""
    key = (
        node.driver,
        node.uri,
        node.storage_dir,
        node.network_mode,
        node.bridge or "",
        node.virt_type,
        str(node.id),
    )
    with _drivers_lock:
        driver = _drivers.get(key)
        if driver is None:
            driver = _drivers[key] = drivers.build(node)
        return driver


def forget_drivers() -> None:
    with _drivers_lock:
        for driver in _drivers.values():
            driver.close()
        _drivers.clear()


@dataclass(frozen=True)
class Need:
    vcpus: int
    memory_mb: int
    disk_gb: int


def _fits(need: Need):  # type: ignore[no-untyped-def]
    return (
        (Node.allocated_vcpus + need.vcpus <= Node.vcpus * Node.cpu_overcommit)
        & (Node.allocated_memory_mb + need.memory_mb <= Node.memory_mb * Node.ram_overcommit)
        & (Node.allocated_disk_gb + need.disk_gb <= Node.disk_gb * Node.disk_overcommit)
    )


def _free_room() -> tuple[ColumnElement[Any], ...]:
    """Room left on a node, overcommit included: memory, vCPUs, disk."""
    return (
        Node.memory_mb * Node.ram_overcommit - Node.allocated_memory_mb,
        Node.vcpus * Node.cpu_overcommit - Node.allocated_vcpus,
        Node.disk_gb * Node.disk_overcommit - Node.allocated_disk_gb,
    )


def placement_order(placement: Placement) -> tuple[Any, ...]:
    """The order candidate nodes are tried in: by free memory, then free vCPUs, then free
    disk — most free first to ``spread``, least free first to ``pack`` — and by id at the end,
    so the choice is the same every time."""
    keys = _free_room()
    if placement == "pack":
        return (*(key.asc() for key in keys), Node.id)
    return (*(key.desc() for key in keys), Node.id)


def reserve(
    *, db: Session, region_id: uuid.UUID, need: Need, placement: Placement = "spread"
) -> Node:
    """Reserve ``need`` on an enabled node of the region it fits on, chosen by ``placement``
    (the ``compute.placement`` setting): ``spread`` takes the node with the most free memory,
    ``pack`` the one with the least that still fits (``placement_order``). Disabled nodes and
    nodes in maintenance never get a new instance.

    Each attempt is one guarded ``UPDATE … WHERE <still fits>``: when two creates race for the
    last room on a node, the second one's update re-checks the row the first committed and
    matches nothing, and it moves on to the next node. Nothing can overbook (the table's CHECK
    constraint says so too). A node the reconciler found down is skipped until it answers
    again (:func:`record_health`)."""
    candidates = db.scalars(
        select(Node.id)
        .where(
            Node.region_id == region_id,
            Node.status == "enabled",
            Node.health != "down",
            _fits(need),
        )
        .order_by(*placement_order(placement))
    ).all()
    for node_id in candidates:
        reserved = db.execute(
            update(Node)
            .where(Node.id == node_id, Node.status == "enabled", Node.health != "down", _fits(need))
            .values(
                allocated_vcpus=Node.allocated_vcpus + need.vcpus,
                allocated_memory_mb=Node.allocated_memory_mb + need.memory_mb,
                allocated_disk_gb=Node.allocated_disk_gb + need.disk_gb,
            )
            .returning(Node.id)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        if reserved is not None:
            node = db.get(Node, reserved, populate_existing=True)
            assert node is not None
            events.announce(db, kind="node", user_id=None, id=node.id)  # its allocation
            return node
    raise NoCapacityError(
        "There is no room for this plan in this region right now; try another region or plan."
    )


def record_health(*, db: Session, node: Node, up: bool, error: str | None = None) -> None:
    """What a reconcile pass saw of ``node``: its libvirt connection answered (``up``, and it
    was seen now) or failed (``down``, with the error). Placement skips a down node. Staff
    pages hear of it: ``node`` when its health changed (the overview counts it), else
    ``node_seen`` (a new "last seen", for the nodes page alone)."""
    health = "up" if up else "down"
    now = utcnow()
    changed = node.health != health
    if changed:
        log.warning("node.health_changed", node=node.name, health=health, error=error)
        node.health = health
        node.health_changed_at = now
    node.health_error = None if up else (error or "unreachable")[:500]
    if up:
        node.last_seen_at = now
    events.announce(db, kind="node" if changed else "node_seen", user_id=None, id=node.id)


def release(*, db: Session, node_id: uuid.UUID, need: Need) -> None:
    db.execute(
        update(Node)
        .where(Node.id == node_id)
        .values(
            allocated_vcpus=Node.allocated_vcpus - need.vcpus,
            allocated_memory_mb=Node.allocated_memory_mb - need.memory_mb,
            allocated_disk_gb=Node.allocated_disk_gb - need.disk_gb,
        )
        .execution_options(synchronize_session=False)
    )
    events.announce(db, kind="node", user_id=None, id=node_id)


# -- administration --------------------------------------------------------------------------


# libvirt URIs the driver can use: QEMU's system or session daemon, on this machine (no host:
# ``qemu:///system``, or ``qemu+unix:///…?socket=…``) or on another (``qemu+ssh://host/…``,
# tcp, tls, or no transport, which libvirt takes as tls).
LOCAL_ONLY, REMOTE_ONLY = {"unix"}, {"ssh", "libssh", "libssh2", "tcp", "tls"}
LIBVIRT_PATHS = ("/system", "/session")


def uri_problem(driver: str, uri: str) -> str | None:
    """What is wrong with ``uri`` as the address of a ``driver`` node, or None: a libvirt node
    needs ``qemu[+transport]://[host]/system`` (or ``/session``), e.g. ``qemu:///system`` or
    ``qemu+ssh://root@host/system``; a fake one ``fake://<name>``."""
    if any(ch.isspace() or not ch.isprintable() for ch in uri):
        return "no spaces or control characters"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "not a URI"
    if driver == "fake":
        return None if parts.scheme == "fake" and parts.netloc else "fake://<name>"
    scheme, _, transport = parts.scheme.partition("+")
    if scheme != "qemu" or transport not in {"", *LOCAL_ONLY, *REMOTE_ONLY}:
        return "qemu:// or qemu+unix|ssh|libssh|libssh2|tcp|tls://"
    if parts.path not in LIBVIRT_PATHS:
        return "the path is /system or /session"
    if transport in REMOTE_ONLY and not parts.hostname:
        return f"qemu+{transport}:// needs a host"
    if transport in LOCAL_ONLY and parts.netloc:
        return "qemu+unix:// names no host (the socket is on this machine)"
    return None


def create_node(*, db: Session, body: NodeCreate, allow_fake: bool) -> Node:
    if body.driver == "fake" and not allow_fake:
        raise InvalidInputError(
            "The in-memory driver is for tests only.",
            errors=[{"field": "driver", "message": "not allowed on this installation"}],
        )
    problem = uri_problem(body.driver, body.uri)
    if problem is not None:
        raise InvalidInputError(
            "The URI is not one the driver can connect to.",
            errors=[{"field": "uri", "message": problem}],
        )
    if body.network_mode == "bridge" and not body.bridge:
        raise InvalidInputError(
            "A bridged node needs the bridge's name.",
            errors=[{"field": "bridge", "message": "required when network_mode is bridge"}],
        )
    region = catalog.find_active_region(db=db, ref=body.region)
    if region is None:
        raise InvalidInputError(
            "No such region.", errors=[{"field": "region", "message": "no such region"}]
        )
    if db.scalar(select(Node.id).where(Node.name == body.name)) is not None:
        raise ConflictError(
            "A node with this name exists.", errors=[{"field": "name", "message": "in use"}]
        )
    values = body.model_dump(exclude={"region"})
    node = Node(region_id=region.id, **values)
    db.add(node)
    flush_or_raise(  # a concurrent add of the same name won
        db,
        ConflictError(
            "A node with this name exists.", errors=[{"field": "name", "message": "in use"}]
        ),
    )
    return node


def update_node(*, db: Session, node_id: uuid.UUID, body: NodeUpdate) -> Node:
    node = get_node(db=db, node_id=node_id, lock=True)
    changes = body.model_dump(include=body.model_fields_set, exclude_none=False)
    if changes.get("image_boot_json") is not None:
        changes["image_boot_json"] = {
            slug: {k: v for k, v in files.items() if v is not None}
            for slug, files in changes["image_boot_json"].items()
        }
    nulls = [field for field, value in changes.items() if value is None]
    if nulls:
        raise InvalidInputError(
            "Fields may be left out, but not set to null.",
            errors=[{"field": field, "message": "may not be null"} for field in nulls],
        )
    for field, value in changes.items():
        setattr(node, field, value)
    flush_or_raise(
        db,
        ConflictError(
            "The node's instances need more than that capacity.",
            type="capacity-in-use",
            title="Capacity in use",
        ),
    )
    return node


def get_node(*, db: Session, node_id: uuid.UUID, lock: bool = False) -> Node:
    node = db.get(Node, node_id, with_for_update=lock)
    if node is None:
        raise NotFoundError("There is no such node.")
    return node


def instance_counts(*, db: Session, node_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many live instances each node holds (nodes with none are left out)."""
    wanted = list(node_ids)
    if not wanted:
        return {}
    rows = db.execute(
        select(Instance.node_id, func.count())
        .where(Instance.node_id.in_(wanted), Instance.deleted_at.is_(None))
        .group_by(Instance.node_id)
    )
    return {node_id: count for node_id, count in rows if node_id is not None}


def node_names(*, db: Session) -> list[str]:
    """Every node's name, for choosing one (a filter of the staff instance list)."""
    return list(db.scalars(select(Node.name).order_by(Node.name)))


def list_nodes(*, db: Session, params: PageParams) -> tuple[list[Node], str | None]:
    return paginate(
        db, select(Node), order_by=(Node.name, Node.id), params=params, descending=False
    )


@dataclass(frozen=True)
class Usage:
    """One resource of the enabled fleet: what instances reserved of the room placement may
    fill (capacity times overcommit)."""

    allocated: int
    room: Decimal

    @property
    def percent(self) -> int:
        return int(self.allocated * 100 / self.room) if self.room > 0 else 0


@dataclass(frozen=True)
class FleetSummary:
    up: int
    down: int
    unknown: int  # not reconciled yet
    not_enabled: int  # disabled or in maintenance: no health or capacity counted
    vcpus: Usage
    memory_mb: Usage
    disk_gb: Usage


def health_summary(*, db: Session) -> FleetSummary:
    """Enabled nodes by health, the rest counted apart, and the allocation of the enabled
    ones per resource: one grouped statement (the staff overview)."""
    enabled = Node.status == "enabled"
    rows = db.execute(
        select(
            Node.health,
            enabled,
            func.count(),
            func.coalesce(func.sum(Node.allocated_vcpus), 0),
            func.coalesce(func.sum(Node.vcpus * Node.cpu_overcommit), 0),
            func.coalesce(func.sum(Node.allocated_memory_mb), 0),
            func.coalesce(func.sum(Node.memory_mb * Node.ram_overcommit), 0),
            func.coalesce(func.sum(Node.allocated_disk_gb), 0),
            func.coalesce(func.sum(Node.disk_gb * Node.disk_overcommit), 0),
        ).group_by(Node.health, enabled)
    ).all()
    health = {"up": 0, "down": 0, "unknown": 0}
    totals = [Decimal(0)] * 6  # allocated, room: vCPUs, memory, disk
    not_enabled = 0
    for row in rows:
        if not row[1]:
            not_enabled += int(row[2])
            continue
        health[str(row[0])] = health.get(str(row[0]), 0) + int(row[2])
        totals = [total + Decimal(value) for total, value in zip(totals, row[3:], strict=True)]
    return FleetSummary(
        up=health["up"],
        down=health["down"],
        unknown=health["unknown"],
        not_enabled=not_enabled,
        vcpus=Usage(int(totals[0]), totals[1]),
        memory_mb=Usage(int(totals[2]), totals[3]),
        disk_gb=Usage(int(totals[4]), totals[5]),
    )
