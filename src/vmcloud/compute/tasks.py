"""Compute jobs: provisioning, power actions, deletion, reconciliation and usage metrics.

An instance's jobs share a procrastinate lock, so they run one at a time and in order. Each job
reads the instance, talks to the hypervisor outside any transaction, then records the outcome
in a short transaction of its own. Transient failures are retried with growing waits; the last
failed attempt leaves the instance ``error`` with the reason in ``error_reason``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import procrastinate
from procrastinate import JobContext

from vmcloud.compute import metrics, runtime
from vmcloud.compute import reconcile as reconciler
from vmcloud.compute.drivers.base import DriverError, VMState
from vmcloud.compute.models import Instance
from vmcloud.compute.service import set_status
from vmcloud.core import jobs
from vmcloud.core.clock import utcnow
from vmcloud.core.logging import get_logger

log = get_logger(__name__)
RETRY = procrastinate.RetryStrategy(max_attempts=5, exponential_wait=2)
FINAL_STATES = {"starting": "running", "stopping": "stopped", "rebooting": "running"}
# An action job also enforces a suspension: the VM is stopped and the status stays.
ACTION_STATES = (*FINAL_STATES, "suspended")


def _is_last_attempt(context: JobContext) -> bool:
    job = context.job
    if job is None or RETRY.max_attempts is None:
        return True
    return job.attempts + 1 >= RETRY.max_attempts


def _give_up(instance_id: uuid.UUID, exc: Exception) -> None:
    with jobs.unit_of_work() as (db, _):
        instance = db.get(Instance, instance_id, with_for_update=True)
        if instance is not None and instance.status not in ("deleting", "deleted"):
            # One that never came up is refunded by the billing run's sweep.
            set_status(instance, "error", error=str(exc))
    log.warning("instance.error", instance_id=str(instance_id), error=str(exc))


def _fail(context: JobContext, instance_id: uuid.UUID, exc: Exception) -> None:
    if _is_last_attempt(context):
        _give_up(instance_id, exc)
        return
    raise exc  # procrastinate retries the job later


# Each job is safe to run again: provisioning clears what an earlier attempt left, power
# actions and destroy are idempotent in every driver (drivers/base.py).
@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.task(name="compute.provision_instance", queue="compute", retry=RETRY, pass_context=True)
def provision_instance(context: JobContext, instance_id: str) -> None:
    iid = uuid.UUID(instance_id)
    with jobs.unit_of_work() as (db, _):
        instance = db.get(Instance, iid, with_for_update=True)
        if instance is None or instance.status not in ("pending", "provisioning"):
            return
        set_status(instance, "provisioning")
        target = runtime.target_of(db, instance)
    try:
        # Whatever an interrupted earlier attempt left (a domain, a disk, a seed) goes first;
        # destroy is idempotent.
        target.driver.destroy(iid)
        target.driver.create(target.spec)
        state = target.driver.state(iid)
        if state != VMState.RUNNING:
            target.driver.destroy(iid)
            raise DriverError(f"the VM did not stay up after it was created (it is {state})")
    except Exception as exc:
        _fail(context, iid, exc)
        return
    with jobs.unit_of_work() as (db, _):
        instance = db.get(Instance, iid, with_for_update=True)
        if instance is not None and instance.status == "provisioning":
            set_status(instance, "running")
            instance.started_at = utcnow()
            metrics.sample(db, instance, target.driver)  # usage figures from the first minute
    log.info("instance.provisioned", instance_id=instance_id)


@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.task(name="compute.instance_action", queue="compute", retry=RETRY, pass_context=True)
def run_instance_action(context: JobContext, instance_id: str) -> None:
    iid = uuid.UUID(instance_id)
    with jobs.unit_of_work() as (db, job_runtime):
        instance = db.get(Instance, iid)
        if instance is None or instance.status not in ACTION_STATES:
            return
        status = instance.status
        target = runtime.target_of(db, instance)
        stop_timeout = job_runtime.settings.instance_stop_timeout
    try:
        if status == "suspended":
            if target.driver.state(iid) == VMState.RUNNING:
                target.driver.stop(iid, timeout=stop_timeout)
            return
        if status == "starting":
            target.driver.start(iid)
        elif status == "stopping":
            target.driver.stop(iid, timeout=stop_timeout)
        else:
            target.driver.reboot(iid)
    except Exception as exc:
        _fail(context, iid, exc)
        return
    with jobs.unit_of_work() as (db, _):
        instance = db.get(Instance, iid, with_for_update=True)
        if instance is not None and instance.status == status:
            set_status(instance, FINAL_STATES[status])
            if status == "stopping":
                instance.stopped_at = utcnow()
            else:
                instance.started_at = utcnow()


@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.task(name="compute.destroy_instance", queue="compute", retry=RETRY, pass_context=True)
def destroy_instance(context: JobContext, instance_id: str) -> None:
    iid = uuid.UUID(instance_id)
    with jobs.unit_of_work() as (db, _):
        instance = db.get(Instance, iid)
        if instance is None or instance.status != "deleting":
            return
        target = runtime.target_of(db, instance)
    try:
        target.driver.destroy(iid)
    except Exception as exc:
        _fail(context, iid, exc)
        return
    with jobs.unit_of_work() as (db, _):
        reconciler.finish_deletion(db, iid)


@jobs.on_stall(jobs.OnStall.FAIL)
@jobs.app.periodic(cron="* * * * *", periodic_id="reconcile-nodes")
@jobs.app.task(name="compute.reconcile", queue="maintenance")
def reconcile_nodes(timestamp: int) -> None:
    with jobs.unit_of_work() as (db, job_runtime):
        stale = timedelta(seconds=job_runtime.settings.stale_transition_seconds)
        reconciler.reconcile_all(db, stale_after=stale)


@jobs.on_stall(jobs.OnStall.FAIL)
@jobs.app.periodic(cron="* * * * *", periodic_id="collect-metrics")
@jobs.app.task(name="compute.collect_metrics", queue="maintenance")
def collect_metrics(timestamp: int) -> None:
    with jobs.unit_of_work() as (db, _):
        metrics.collect_all(db)
