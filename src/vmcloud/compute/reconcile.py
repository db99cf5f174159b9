"""Reconciliation: make the database and the hypervisors agree again.

Run every minute (``compute.reconcile``) and after a crash. For each enabled node it compares
the VMs the node has with the live instances placed on it:

- a VM with no live instance is destroyed (an orphan of an interrupted delete or provision);
- a running instance whose VM vanished becomes ``error``; one whose VM was stopped outside
  the platform becomes ``stopped`` (and the reverse);
- an instance stuck in a transitional state longer than ``stale_transition_seconds`` (its job
  died with its worker) is settled from what the node reports; a stuck delete is finished.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.catalog import service as catalog
from vmcloud.compute import ips, nodes
from vmcloud.compute.drivers.base import ComputeDriver, VMState
from vmcloud.compute.models import TRANSITIONAL, Instance, Node
from vmcloud.compute.service import reserved_need, set_status
from vmcloud.core import jobs
from vmcloud.core.clock import utcnow
from vmcloud.core.logging import get_logger

log = get_logger(__name__)


def finish_deletion(db: Session, instance_id: uuid.UUID) -> None:
    """Release the instance's capacity and address and mark it deleted (exactly once: only an
    instance still ``deleting``, under its row lock)."""
    instance = db.get(Instance, instance_id, with_for_update=True)
    if instance is None or instance.status != "deleting":
        return
    product = catalog.get_product_by_id(db=db, product_id=instance.product_id)
    need = reserved_need(instance, product.specs_json if product else None)
    if instance.node_id is not None and need is not None:
        nodes.release(db=db, node_id=instance.node_id, need=need)
    set_status(instance, "deleted")
    instance.deleted_at = utcnow()  # the address is free again: only live rows hold one
    ips.release(db=db, address=instance.ip_address)


def _since(instance: Instance) -> timedelta:
    if instance.transition_at is None:
        return timedelta.max
    return utcnow() - instance.transition_at


def _error(instance: Instance, reason: str) -> None:
    set_status(instance, "error", error=reason)
    log.warning("reconcile.error", instance_id=str(instance.id), reason=reason)


def _busy(db: Session, instance_id: uuid.UUID) -> bool:
    """Whether a job for the instance is queued or running: its outcome, not the reconciler,
    decides the instance's next state. A job whose worker died counts until the stalled-jobs
    pass (``core/jobs.recover_stalled``) retries it or, at its last attempt, fails it; then the
    reconciler settles the instance from the node's truth."""
    return jobs.has_active(db, lock=jobs.instance_lock(instance_id))


def reconcile_node(db: Session, node: Node, *, stale_after: timedelta) -> None:
    """``stale_after``: how long an instance may sit in a transitional state with no job before
    it is settled from the node's truth (``VMCLOUD_STALE_TRANSITION_SECONDS``)."""
    driver = nodes.driver_for(node)
    try:
        on_node = set(driver.list())
    except Exception as exc:
        log.warning("reconcile.node_unreachable", node=node.name, error=str(exc))
        nodes.record_health(db=db, node=node, up=False, error=str(exc))
        return
    nodes.record_health(db=db, node=node, up=True)
    live = db.scalars(
        select(Instance).where(Instance.node_id == node.id, Instance.deleted_at.is_(None))
    ).all()
    for orphan in on_node - {instance.id for instance in live}:
        try:
            log.warning("reconcile.orphan_destroyed", node=node.name, instance_id=str(orphan))
            driver.destroy(orphan)
        except Exception as exc:
            log.warning("reconcile.orphan_failed", instance_id=str(orphan), error=str(exc))
    stale = stale_after
    for instance in live:
        if _busy(db, instance.id):
            continue
        try:
            with db.begin_nested():
                db.refresh(instance, with_for_update=True)
                # Asked again under the row lock, not taken from the listing: a VM provisioned
                # after the listing (its job done by now) is not missing.
                state = driver.state(instance.id)
                _settle(db, driver, instance, state, stale)
        except Exception as exc:
            log.warning("reconcile.instance_failed", instance_id=str(instance.id), error=str(exc))


def _settle(
    db: Session, driver: ComputeDriver, instance: Instance, state: VMState, stale: timedelta
) -> None:
    status = instance.status or ""
    if status == "running":
        if state == VMState.MISSING:
            _error(instance, "the VM disappeared from its node")
        elif state in (VMState.STOPPED, VMState.CRASHED):
            set_status(instance, "stopped")
            instance.stopped_at = utcnow()
        return
    if status == "stopped":
        if state == VMState.RUNNING:
            set_status(instance, "running")
            instance.started_at = utcnow()
        return
    if status == "suspended":
        if state == VMState.RUNNING:  # started outside the platform: unpaid stays stopped
            driver.stop(instance.id, timeout=0)
        return
    if status not in TRANSITIONAL or _since(instance) < stale:
        return
    if status == "deleting":
        driver.destroy(instance.id)
        finish_deletion(db, instance.id)
    elif state == VMState.RUNNING:
        set_status(instance, "running")
        instance.started_at = instance.started_at or utcnow()
    elif state == VMState.STOPPED and status != "pending":
        set_status(instance, "stopped")
    else:
        if state != VMState.MISSING:
            driver.destroy(instance.id)
        _error(instance, f"{status} was interrupted; delete the instance or ask support")


def reconcile_all(db: Session, *, stale_after: timedelta) -> None:
    for node in db.scalars(select(Node).where(Node.status != "disabled")).all():
        reconcile_node(db, node, stale_after=stale_after)
    db.flush()
