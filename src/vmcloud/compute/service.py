"""Instance lifecycle: create, act, delete, read. The slow work (talking to hypervisors) runs in
jobs (``compute.tasks``), one at a time per instance; this module decides and records."""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Row,
    Select,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    null,
    or_,
    select,
)
from sqlalchemy.orm import Session, object_session

from vmcloud.accounts import service as accounts
from vmcloud.accounts import ssh_keys
from vmcloud.accounts.models import STAFF_ROLES, User
from vmcloud.audit import service as audit
from vmcloud.catalog import service as catalog
from vmcloud.catalog.models import Image, Region
from vmcloud.compute import ips, nodes
from vmcloud.compute.models import Instance, InstanceMetric, Node
from vmcloud.compute.schemas import (
    NEVER_SHOWN,
    STAFF_ONLY,
    InstanceAdminRead,
    InstanceCreate,
    InstanceRead,
)
from vmcloud.core import events, jobs
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from vmcloud.core.pagination import PageParams, PageStatement, paginate
from vmcloud.db.session import flush_or_raise
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import MAX_INSTANCES_PER_USER, PLACEMENT

# Which action may start from which state, and the state it moves the instance to.
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "start": (("stopped",), "starting"),
    "stop": (("running",), "stopping"),
    "reboot": (("running",), "rebooting"),
}
NOT_DELETABLE = ("deleting", "deleted")


class QuotaExceededError(ForbiddenError):
    type = "quota-exceeded"
    title = "Instance limit reached"


def reserved_need(instance: Instance, product_specs: dict[str, Any] | None) -> nodes.Need | None:
    """What the instance holds on its node (recorded at creation; older rows: the plan)."""
    if instance.reserved_vcpus is not None:
        return nodes.Need(
            vcpus=instance.reserved_vcpus,
            memory_mb=instance.reserved_memory_mb or 0,
            disk_gb=instance.reserved_disk_gb or 0,
        )
    return need_of(product_specs) if product_specs else None


def need_of(specs: dict[str, Any]) -> nodes.Need:
    return nodes.Need(
        vcpus=int(specs["vcpus"]), memory_mb=int(specs["memory_mb"]), disk_gb=int(specs["disk_gb"])
    )


def _invalid(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(
        f"The {field} is not valid: {message}.", errors=[{"field": field, "message": message}]
    )


def _default_hostname(name: str, instance_id: uuid.UUID) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return label or f"vm-{instance_id.hex[:8]}"


def create_instance(*, db: Session, owner: User, body: InstanceCreate) -> Instance:
    """Validate, reserve capacity and an address, write the instance ``pending`` and queue its
    provisioning, all in the caller's transaction: either all of it happens or none."""
    product = catalog.find_orderable_product(db=db, ref=body.product)
    if product is None:
        raise _invalid("product", "no such plan on sale")
    if body.billing_cycle not in product.pricing_json:
        raise _invalid("billing_cycle", f"the plan has no {body.billing_cycle} price")
    region = catalog.find_active_region(db=db, ref=body.region)
    if region is None:
        raise _invalid("region", "no such region")
    image = catalog.find_active_image(db=db, ref=body.image)
    if image is None:
        raise _invalid("image", "no such image")
    need = need_of(product.specs_json)
    if image.min_disk_gb > need.disk_gb:
        raise _invalid("image", f"needs a disk of at least {image.min_disk_gb} GB")
    saved = ssh_keys.key_texts(db=db, user=owner, key_ids=body.ssh_key_ids)
    keys = list(dict.fromkeys([*body.ssh_keys, *saved]))

    limit = site_settings.get(db, MAX_INSTANCES_PER_USER)
    accounts.lock_user(db=db, user_id=owner.id)  # serialise per user: quota and balance
    live = db.scalar(
        select(func.count(Instance.id)).where(
            Instance.user_id == owner.id, Instance.deleted_at.is_(None)
        )
    )
    if live is not None and live >= int(limit):
        raise QuotaExceededError(f"An account may have {limit} instances at a time.")

    placement = site_settings.get(db, PLACEMENT)
    node = nodes.reserve(db=db, region_id=region.id, need=need, placement=placement)
    lease = ips.allocate(db=db, region_id=region.id)
    instance = Instance(
        id=uuid.uuid4(),
        user_id=owner.id,
        product_id=product.id,
        name=body.name,
        ip_address=lease.address,
        status="pending",
        node_id=node.id,
    )
    instance.hostname = body.hostname or _default_hostname(body.name, instance.id)
    instance.region_id, instance.image_id = region.id, image.id
    instance.billing_cycle = body.billing_cycle
    # What was reserved on the node: released exactly, whatever the plan becomes later.
    instance.reserved_vcpus, instance.reserved_memory_mb, instance.reserved_disk_gb = (
        need.vcpus,
        need.memory_mb,
        need.disk_gb,
    )
    instance.transition_at = utcnow()
    # The guest's own configuration, for the job that builds it.
    instance.metadata_json = {
        "prefix": lease.prefix,
        "gateway": lease.gateway,
        "ssh_keys": keys,
        "user_data": body.user_data,
    }
    audit.label(
        instance,
        "instance.create",
        extra={"region": region.slug, "image": image.slug, "node": node.name},
    )
    db.add(instance)
    # Refused only when pools of two regions overlap and both handed out the address.
    flush_or_raise(
        db,
        ips.PoolExhaustedError(
            "The address picked is taken by another region's instance; try again."
        ),
    )
    _queue(db, "provision", instance.id)
    announce(db, instance)
    return instance


def _queue(db: Session, what: str, instance_id: uuid.UUID) -> None:
    task = {
        "provision": "compute.provision_instance",
        "action": "compute.instance_action",
        "destroy": "compute.destroy_instance",
    }[what]
    # The lock makes an instance's jobs run one at a time, in the order they were queued.
    jobs.defer(db, task, lock=jobs.instance_lock(instance_id), instance_id=str(instance_id))


def announce(db: Session, instance: Instance) -> None:
    """Tell the owner's open panel pages that the instance changed (its status, address or
    name), once the transaction commits; nothing if it rolls back."""
    events.announce(db, kind="instance", user_id=instance.user_id, id=instance.id)


def set_status(instance: Instance, status: str, *, error: str | None = None) -> None:
    """Move to ``status`` now; ``error`` (with ``"error"``) says why it failed. Every status
    change goes through here, and is announced in the instance's own transaction."""
    instance.status = status
    instance.transition_at = utcnow()
    if error is not None:
        instance.error_reason = error[:500]
    db = object_session(instance)
    if db is not None:
        announce(db, instance)


def request_action(*, db: Session, instance: Instance, action: str) -> Instance:
    allowed, transitional = ACTIONS[action]
    if instance.status not in allowed:
        raise ConflictError(
            f"An instance that is {instance.status} cannot {action}.",
            type="invalid-state",
            title="Not allowed in this state",
        )
    audit.label(instance, f"instance.{action}")
    set_status(instance, transitional)
    db.flush()
    _queue(db, "action", instance.id)
    return instance


def check_deletable(instance: Instance) -> None:
    if instance.status in NOT_DELETABLE:
        raise ConflictError(
            "The instance is already being deleted.", type="invalid-state", title="Not allowed"
        )


def failed_before_start(instance: Instance) -> bool:
    """It ended in ``error`` without its VM ever having run (provisioning failed)."""
    return instance.status == "error" and instance.started_at is None


def live_instances_among(
    *,
    db: Session,
    among: Select[Any] | CompoundSelect[Any],
    statuses: tuple[str, ...] | None = None,
    except_statuses: tuple[str, ...] = (),
    limit: int,
) -> list[uuid.UUID]:
    """Ids of live instances whose id ``among`` selects (another domain's query of its own
    rows), in ``statuses`` if given and not in ``except_statuses``: how billing finds what to
    suspend or delete without reading the instances table itself."""
    stmt = select(Instance.id).where(Instance.id.in_(among), Instance.deleted_at.is_(None))
    if statuses is not None:
        stmt = stmt.where(Instance.status.in_(statuses))
    if except_statuses:
        stmt = stmt.where(Instance.status.not_in(except_statuses))
    return list(db.scalars(stmt.limit(limit)))


def never_started_failures(
    *, db: Session, among: Select[uuid.UUID | None], limit: int
) -> list[uuid.UUID]:
    """Live instances, of the ids ``among`` selects, that failed before they ever started."""
    return list(
        db.scalars(
            select(Instance.id)
            .where(
                Instance.id.in_(among),
                Instance.status == "error",
                Instance.started_at.is_(None),
                Instance.deleted_at.is_(None),
            )
            .limit(limit)
        )
    )


def delete_instance(*, db: Session, instance: Instance, reason: str | None = None) -> Instance:
    """Delete the VM (in a job). Billing's flow (``billing.flows.delete_instance``) ends the
    subscription first; call that, not this, for a customer's instance."""
    check_deletable(instance)
    audit.label(instance, "instance.delete", extra={"reason": reason} if reason else None)
    set_status(instance, "deleting")
    db.flush()
    _queue(db, "destroy", instance.id)
    return instance


# States from which billing may suspend an instance (its VM is or may soon be up).
SUSPENDABLE = ("running", "stopped", "starting", "stopping", "rebooting")


def suspend_instance(*, db: Session, instance: Instance, reason: str) -> bool:
    """Suspend for non-payment: the VM is stopped (in a job) and the customer cannot start it
    until the debt is paid. Returns whether the instance was suspended."""
    if instance.status not in SUSPENDABLE:
        return False
    audit.label(instance, "instance.suspend", extra={"reason": reason})
    set_status(instance, "suspended")
    db.flush()
    _queue(db, "action", instance.id)
    return True


def resume_instance(*, db: Session, instance: Instance) -> bool:
    """Undo a suspension: the VM starts again."""
    if instance.status != "suspended":
        return False
    audit.label(instance, "instance.resume")
    set_status(instance, "starting")
    db.flush()
    _queue(db, "action", instance.id)
    return True


def get_instance(
    *, db: Session, instance_id: uuid.UUID, lock: bool = False, skip_locked: bool = False
) -> Instance | None:
    """Any live instance, for other domains' jobs (no ownership check). ``skip_locked``:
    ``None`` when another transaction holds the row."""
    stmt = select(Instance).where(Instance.id == instance_id, Instance.deleted_at.is_(None))
    if lock:
        stmt = stmt.with_for_update(skip_locked=skip_locked)
    return db.scalar(stmt)


def rename_instance(*, db: Session, instance: Instance, name: str) -> Instance:
    instance.name = name
    db.flush()
    announce(db, instance)
    return instance


# -- reading ---------------------------------------------------------------------------------


# Loaders named for what the caller means to do with the instance. Each answers 404, never
# 403, when the caller may not: another user's instance does not exist for them. Routes take
# them as dependencies (``compute.deps``), so no route re-checks who may do what.


def _load(
    db: Session, instance_id: uuid.UUID, user: User, *, any_for: tuple[str, ...], lock: bool
) -> Instance:
    """The live instance if ``user`` owns it or has one of the roles ``any_for``; else 404."""
    stmt = select(Instance).where(Instance.id == instance_id, Instance.deleted_at.is_(None))
    if user.role not in any_for:
        stmt = stmt.where(Instance.user_id == user.id)
    instance = db.scalar(stmt.with_for_update() if lock else stmt)
    if instance is None:
        raise NotFoundError("There is no such instance.")
    return instance


def get_visible_instance(*, db: Session, instance_id: uuid.UUID, user: User) -> Instance:
    """To read: the owner's; staff read every instance."""
    return _load(db, instance_id, user, any_for=STAFF_ROLES, lock=False)


def get_changeable_instance(*, db: Session, instance_id: uuid.UUID, user: User) -> Instance:
    """To change (rename, act, delete), locked for the change: the owner's; admins act on any.
    Support staff read every instance but change only their own."""
    return _load(db, instance_id, user, any_for=("admin",), lock=True)


def get_console_instance(*, db: Session, instance_id: uuid.UUID, user: User) -> Instance:
    """To use its serial console (typing into the VM is acting on it, but changes no row, so
    nothing is locked): the owner's; admins reach any."""
    return _load(db, instance_id, user, any_for=("admin",), lock=False)


def get_owned_instance(
    *, db: Session, instance_id: uuid.UUID, user: User, lock: bool = False
) -> Instance:
    """Strictly the user's own, whatever their role (what a ticket may name)."""
    return _load(db, instance_id, user, any_for=(), lock=lock)


INSTANCE_ORDER = (Instance.created_at, Instance.id)


def _metadata_view(named: dict[str, ColumnElement[Any]], hidden: list[str]) -> ColumnElement[Any]:
    """``metadata_json`` as the API shows it, built by the database (what ``schemas._view``
    does for one ORM instance): the stored keys minus ``hidden``, then the order's region,
    image, billing cycle (and for staff the node) that are set; NULL when nothing is."""
    # A JSON null (what the ORM writes for None) counts as no metadata, as it does in Python.
    stored = func.nullif(Instance.metadata_json, literal_column("'null'::jsonb"))
    keys = ", ".join(f"'{key}'" for key in hidden)
    pairs: list[Any] = []
    for key, column in named.items():
        pairs += [literal_column(f"'{key}'"), column]
    described = func.jsonb_strip_nulls(func.jsonb_build_object(*pairs))
    shown = func.coalesce(stored, literal_column("'{}'::jsonb")).op("-")(
        literal_column(f"ARRAY[{keys}]::text[]")
    )
    nothing = and_(stored.is_(None), *[column.is_(None) for column in named.values()])
    return case((nothing, null()), else_=shown.op("||")(described)).label("metadata_json")


@functools.cache
def _view_select(staff: bool) -> Select[Any]:
    """Exactly the columns of :class:`InstanceRead` (staff: :class:`InstanceAdminRead`), in its
    field order: region and image slugs and the node's name joined in, the address as text."""
    schema = InstanceAdminRead if staff else InstanceRead
    named: dict[str, ColumnElement[Any]] = {
        "region": Region.slug.label("region"),
        "image": Image.slug.label("image"),
        "billing_cycle": Instance.billing_cycle.expression,
    }
    if staff:
        named["node"] = Node.name.label("node")
    hidden = sorted(NEVER_SHOWN if staff else NEVER_SHOWN | STAFF_ONLY)
    special: dict[str, ColumnElement[Any]] = {
        **named,
        # inet's own text form ('10.0.0.5', or '10.0.0.0/24' with a prefix), unparsed.
        "ip_address": func.abbrev(Instance.ip_address).label("ip_address"),
        "metadata_json": _metadata_view(named, hidden),
    }
    columns = [
        special[name] if name in special else getattr(Instance, name)
        for name in schema.model_fields
    ]
    stmt = (
        select(*columns)
        .select_from(Instance)
        .outerjoin(Region, Region.id == Instance.region_id)
        .outerjoin(Image, Image.id == Instance.image_id)
    )
    return stmt.outerjoin(Node, Node.id == Instance.node_id) if staff else stmt


@functools.cache
def _view_page(
    staff: bool, by_user: bool, by_status: bool, by_node: bool, after_cursor: bool
) -> PageStatement:
    """The page statement of one shape of the instance lists, built once (filters bound)."""
    stmt = _view_select(staff).where(Instance.deleted_at.is_(None))
    if by_user:
        stmt = stmt.where(Instance.user_id == bindparam("user_id"))
    if by_status:
        stmt = stmt.where(Instance.status == bindparam("status"))
    if by_node:
        # The node's id first (a scalar subquery), so the instances come in index order.
        node_id = select(Node.id).where(Node.name == bindparam("node")).scalar_subquery()
        stmt = stmt.where(Instance.node_id == node_id)
    return PageStatement.build(stmt, order_by=INSTANCE_ORDER, after_cursor=after_cursor)


def _view_page_for(
    params: PageParams,
    staff: bool,
    user_id: uuid.UUID | None,
    status: str | None,
    node: str | None,
) -> tuple[PageStatement, dict[str, Any]]:
    filters = {"user_id": user_id, "status": status or None, "node": node or None}
    page = _view_page(
        staff,
        user_id is not None,
        bool(status),
        bool(node),
        bool(params.cursor),
    )
    return page, {k: v for k, v in filters.items() if v is not None}


def instance_page_query(
    *,
    params: PageParams,
    staff: bool = False,
    user_id: uuid.UUID | None = None,
    status: str | None = None,
    node: str | None = None,
) -> Select[Any]:
    """The statement :func:`list_instance_views` runs for one page (its values bound apart)."""
    page, _ = _view_page_for(params, staff, user_id, status, node)
    return page.stmt


def list_instance_views(
    *,
    db: Session,
    params: PageParams,
    staff: bool = False,
    user_id: uuid.UUID | None = None,
    status: str | None = None,
    node: str | None = None,
) -> tuple[list[Row[Any]], str | None]:
    """A page of live instances as the API shows them (staff: with node and reservation), as
    result rows with :class:`InstanceRead`'s (:class:`InstanceAdminRead`'s) fields: one
    statement, no ORM objects. Each filter combination has an index that starts with its
    equality columns and ends in :data:`INSTANCE_ORDER` (migration 0014), so a page reads one
    page of rows however many match."""
    page, filters = _view_page_for(params, staff, user_id, status, node)
    return page.run(db, params, **filters)


def list_user_instances(
    *,
    db: Session,
    user_id: uuid.UUID,
    status: str | None = None,
    search: str | None = None,
    limit: int = 200,
) -> list[Instance]:
    """The user's live instances, newest first, for the panel's list: ``status`` exactly,
    ``search`` anywhere in the name, host name or address (case-insensitive)."""
    stmt = select(Instance).where(Instance.user_id == user_id, Instance.deleted_at.is_(None))
    if status:
        stmt = stmt.where(Instance.status == status)
    if search:
        stmt = stmt.where(
            or_(
                Instance.name.icontains(search, autoescape=True),
                Instance.hostname.icontains(search, autoescape=True),
                func.host(Instance.ip_address).contains(search, autoescape=True),
            )
        )
    return list(
        db.scalars(stmt.order_by(Instance.created_at.desc(), Instance.id.desc()).limit(limit))
    )


def list_metrics(
    *, db: Session, instance: Instance, since: datetime | None, params: PageParams
) -> tuple[list[InstanceMetric], str | None]:
    stmt = select(InstanceMetric).where(InstanceMetric.instance_id == instance.id)
    if since is not None:
        stmt = stmt.where(InstanceMetric.collected_at >= since)
    return paginate(
        db, stmt, order_by=(InstanceMetric.collected_at, InstanceMetric.id), params=params
    )


def instance_names(
    *, db: Session, instance_ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID, str]:
    """The names of instances (deleted ones too), for what other domains list per instance."""
    wanted = {i for i in instance_ids if i is not None}
    if not wanted:
        return {}
    rows = db.execute(select(Instance.id, Instance.name).where(Instance.id.in_(wanted)))
    return {row.id: row.name for row in rows}


def status_counts(*, db: Session) -> dict[str, int]:
    """How many instances are in each status, deleted ones left out (the staff overview)."""
    rows = db.execute(
        select(Instance.status, func.count())
        .where(Instance.deleted_at.is_(None), Instance.status != "deleted")
        .group_by(Instance.status)
    )
    return {str(status): int(count) for status, count in rows}


def counts_by_product(*, db: Session, product_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many instances (deleted ones left out) run each of ``product_ids``: the plans page."""
    ids = list(product_ids)
    if not ids:
        return {}
    rows = db.execute(
        select(Instance.product_id, func.count())
        .where(
            Instance.product_id.in_(ids),
            Instance.deleted_at.is_(None),
            Instance.status != "deleted",
        )
        .group_by(Instance.product_id)
    )
    return {product_id: int(count) for product_id, count in rows}
