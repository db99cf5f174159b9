"""The reconciler repairs drift between database and nodes; the metrics job samples usage."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from tests.compute.test_driver_conformance import _spec
from tests.compute.test_instances_api import _order
from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node, make_pool
from tests.helpers import JobRunner, bearer, login
from vmcloud.compute import metrics, nodes, reconcile
from vmcloud.compute.drivers.base import VMState
from vmcloud.compute.drivers.fake import FakeDriver
from vmcloud.compute.models import Instance, InstanceMetric, Node
from vmcloud.config import Settings
from vmcloud.core.clock import utcnow

# The default of VMCLOUD_STALE_TRANSITION_SECONDS.
STALE = timedelta(seconds=Settings().stale_transition_seconds)


@pytest.fixture
def setup(client: TestClient, db: Session) -> tuple[Node, FakeDriver, dict[str, str]]:
    node = make_node(db)
    make_pool(db, "198.18.20.0/28")
    driver = nodes.driver_for(node)
    assert isinstance(driver, FakeDriver)
    user = make_user(db, balance="500.00")
    return node, driver, bearer(login(client, user.username, PASSWORD))


def _instance(db: Session, instance_id: str) -> Instance:
    row = db.get(Instance, uuid.UUID(instance_id))
    assert row is not None
    db.refresh(row)
    return row


def _age(db: Session, instance: Instance, seconds: int) -> None:
    instance.transition_at = utcnow() - timedelta(seconds=seconds)
    db.flush()


def _worker_died_running_its_job(db: Session, instance_id: str, *, status: str) -> None:
    """The provision job was taken by a worker that then died: 'doing', heartbeat long gone;
    with ``status="failed"``, the stalled-jobs pass has since failed it (its last attempt)."""
    worker_id = db.execute(
        text(
            "INSERT INTO procrastinate_workers (last_heartbeat)"
            " VALUES (now() - interval '1 hour') RETURNING id"
        )
    ).scalar_one()
    db.execute(
        text(
            "UPDATE procrastinate_jobs SET status = CAST(:status AS procrastinate_job_status),"
            " worker_id = :w WHERE lock = :lock"
        ),
        {"w": worker_id, "lock": f"instance:{instance_id}", "status": status},
    )


def _job_status(db: Session, instance_id: str) -> list[str]:
    return list(
        db.scalars(
            text("SELECT status::text FROM procrastinate_jobs WHERE lock = :lock"),
            {"lock": f"instance:{instance_id}"},
        )
    )


def test_worker_killed_after_creating_the_vm(
    client: TestClient, db: Session, setup: tuple[Node, FakeDriver, dict[str, str]]
) -> None:
    _node, driver, headers = setup
    instance_id = _order(client, headers).json()["id"]
    instance = _instance(db, instance_id)
    # The provisioning job made the VM, then its worker died before recording it.
    instance.status = "provisioning"
    driver.create(_spec(None, instance_id=instance.id))  # type: ignore[arg-type]
    _age(db, instance, 3600)
    _worker_died_running_its_job(db, instance_id, status="failed")
    reconcile.reconcile_all(db, stale_after=STALE)
    assert _instance(db, instance_id).status == "running"
    assert driver.list() == [instance.id]


def test_worker_killed_before_creating_the_vm(
    client: TestClient, db: Session, setup: tuple[Node, FakeDriver, dict[str, str]]
) -> None:
    _node, driver, headers = setup
    instance_id = _order(client, headers).json()["id"]
    instance = _instance(db, instance_id)
    instance.status = "provisioning"
    _age(db, instance, 3600)
    _worker_died_running_its_job(db, instance_id, status="failed")
    reconcile.reconcile_all(db, stale_after=STALE)
    settled = _instance(db, instance_id)
    assert settled.status == "error"
    assert "interrupted" in (settled.error_reason or "")
    assert driver.list() == []
    # Deleting it then frees its capacity and address: nothing leaks.
    assert client.delete(f"/api/v1/instances/{instance_id}", headers=headers).status_code == 202


def test_a_job_of_a_dead_worker_is_left_to_the_stalled_jobs_pass(
    client: TestClient, db: Session, setup: tuple[Node, FakeDriver, dict[str, str]]
) -> None:
    _, driver, headers = setup
    instance_id = _order(client, headers).json()["id"]
    instance = _instance(db, instance_id)
    instance.status = "provisioning"
    _age(db, instance, 3600)
    # Not yet recovered: the pass may still retry it, so the reconciler must not settle it.
    _worker_died_running_its_job(db, instance_id, status="doing")
    reconcile.reconcile_all(db, stale_after=STALE)
    assert _instance(db, instance_id).status == "provisioning"
    assert _job_status(db, instance_id) == ["doing"]
    assert driver.list() == []


def test_a_vm_provisioned_while_the_node_is_listed_is_not_lost(
    client: TestClient,
    db: Session,
    setup: tuple[Node, FakeDriver, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, driver, headers = setup
    instance_id = _order(client, headers).json()["id"]
    instance = _instance(db, instance_id)
    db.execute(text("DELETE FROM procrastinate_jobs"))  # its job is about to finish
    listed = driver.list

    def list_then_provision() -> list[uuid.UUID]:
        # The node is listed; right after, the provisioning job creates the VM and records
        # the instance running, before the reconciler reads the database.
        seen = listed()
        driver.create(_spec(None, instance_id=instance.id))  # type: ignore[arg-type]
        instance.status = "running"
        db.flush()
        return seen

    monkeypatch.setattr(driver, "list", list_then_provision)
    reconcile.reconcile_all(db, stale_after=STALE)
    settled = _instance(db, instance_id)
    assert settled.status == "running", settled.error_reason
    assert driver.state(instance.id) == VMState.RUNNING


def test_a_queued_job_is_left_to_run_however_long_it_waits(
    client: TestClient, db: Session, setup: tuple[Node, FakeDriver, dict[str, str]]
) -> None:
    _, _, headers = setup
    instance_id = _order(client, headers).json()["id"]
    _age(db, _instance(db, instance_id), 3600)  # the workers were down for an hour
    reconcile.reconcile_all(db, stale_after=STALE)
    assert _instance(db, instance_id).status == "pending"
    assert _job_status(db, instance_id) == ["todo"]


def test_a_fresh_transition_is_left_to_its_job(
    client: TestClient, db: Session, setup: tuple[Node, FakeDriver, dict[str, str]]
) -> None:
    _, _, headers = setup
    instance_id = _order(client, headers).json()["id"]
    reconcile.reconcile_all(db, stale_after=STALE)
    assert _instance(db, instance_id).status == "pending"


def test_drift_is_repaired(
    client: TestClient,
    db: Session,
    setup: tuple[Node, FakeDriver, dict[str, str]],
    job_runner: JobRunner,
) -> None:
    node, driver, headers = setup
    vanished = _order(client, headers, name="vanished").json()["id"]
    halted = _order(client, headers, name="halted").json()["id"]
    job_runner.run("compute.")
    driver.vms.pop(uuid.UUID(vanished))  # undefined by hand on the node
    driver.stop(uuid.UUID(halted))  # shut down from inside the guest
    orphan = uuid.uuid4()  # a VM the platform has no live instance for
    driver.create(_spec(None, instance_id=orphan))  # type: ignore[arg-type]

    reconcile.reconcile_all(db, stale_after=STALE)
    assert _instance(db, vanished).status == "error"
    assert _instance(db, halted).status == "stopped"
    assert driver.state(orphan) == VMState.MISSING
    db.refresh(node)
    assert node.last_seen_at is not None


def test_a_stuck_delete_is_finished(
    client: TestClient,
    db: Session,
    setup: tuple[Node, FakeDriver, dict[str, str]],
    job_runner: JobRunner,
) -> None:
    node, driver, headers = setup
    instance_id = _order(client, headers).json()["id"]
    job_runner.run("compute.")
    client.delete(f"/api/v1/instances/{instance_id}", headers=headers)
    instance = _instance(db, instance_id)
    _age(db, instance, 3600)  # the destroy job died with its worker
    job_runner.connection.execute(text("DELETE FROM procrastinate_jobs"))
    reconcile.reconcile_all(db, stale_after=STALE)
    done = _instance(db, instance_id)
    assert done.status == "deleted" and done.deleted_at is not None
    assert driver.list() == []
    db.refresh(node)
    assert node.allocated_vcpus == 0


def test_metrics_fill_resources_and_the_time_series(
    client: TestClient,
    db: Session,
    setup: tuple[Node, FakeDriver, dict[str, str]],
    job_runner: JobRunner,
) -> None:
    _, _, headers = setup
    instance_id = _order(client, headers).json()["id"]
    job_runner.run("compute.")
    # Provisioning takes the first sample, so figures show from the first minute.
    instance = _instance(db, instance_id)
    assert instance.resources_json is not None
    assert set(instance.resources_json) == {
        "cpu_percent",
        "memory_used_mb",
        "disk_read_bytes",
        "disk_write_bytes",
        "net_rx_bytes",
        "net_tx_bytes",
        "collected_at",
    }
    assert instance.resources_json["collected_at"].endswith("Z")
    assert metrics.collect_all(db) == 0  # within the interval: no new sample
    # A minute later the periodic job samples again.
    db.execute(
        update(InstanceMetric)
        .where(InstanceMetric.instance_id == instance.id)
        .values(collected_at=InstanceMetric.collected_at - timedelta(minutes=2))
    )
    assert metrics.collect_all(db) == 1
    series = client.get(f"/api/v1/instances/{instance_id}/metrics", headers=headers).json()
    assert len(series["items"]) == 2
    assert all(0 <= item["cpu_percent"] <= 100 for item in series["items"])
    future = client.get(
        f"/api/v1/instances/{instance_id}/metrics",
        params={"since": "2999-01-01T00:00:00Z"},
        headers=headers,
    ).json()
    assert future["items"] == []
    # Samples older than the retention are purged.
    db.execute(
        update(InstanceMetric)
        .where(InstanceMetric.instance_id == instance.id)
        .values(collected_at=InstanceMetric.collected_at - timedelta(days=31))
    )
    metrics.collect_all(db)
    rows = db.scalars(select(InstanceMetric).where(InstanceMetric.instance_id == instance.id))
    assert len(list(rows)) == 1  # only the new one
