"""Every committed change of an instance's status (or name) is announced to the owner's panel
pages through ``pg_notify``; a change that rolls back is never announced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from tests.factories.accounts import make_user
from tests.factories.compute import make_node, make_pool
from tests.helpers import JobRunner
from vmcloud.billing import flows
from vmcloud.compute import service as compute
from vmcloud.compute.models import Instance
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.config import Settings
from vmcloud.core import events, jobs
from vmcloud.core.jobs import libpq_url
from vmcloud.core.mail import make_mailer


@pytest.fixture
def listener(fresh_database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(libpq_url(fresh_database_url), autocommit=True) as conn:
        conn.execute(f"LISTEN {events.CHANNEL}")
        yield conn


def _heard(conn: psycopg.Connection) -> list[dict[str, str]]:
    """The instance announcements sent since the last call (billing announces its own)."""
    heard = [json.loads(n.payload) for n in conn.notifies(timeout=0.5)]
    return [event for event in heard if event["kind"] == "instance"]


def test_job_transitions_announce_at_commit_and_rollbacks_never(
    settings: Settings, fresh_database_url: str, tmp_path: Path, listener: psycopg.Connection
) -> None:
    engine = create_engine(fresh_database_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    own = settings.model_copy(update={"database_url": fresh_database_url, "data_dir": tmp_path})
    jobs.configure(jobs.Runtime(own, factory, make_mailer(own)))
    try:
        with factory() as db:
            make_node(db)
            make_pool(db, "198.18.40.0/29")
            owner = make_user(db, balance="100.00")
            body = InstanceCreate(
                name="web-1",
                product="nano",
                region="local",
                image="tiny-linux",
                billing_cycle="monthly",
            )
            instance = flows.order_instance(db=db, owner=owner, body=body)
            iid, uid = instance.id, owner.id
            db.commit()
        expected = {"kind": "instance", "user": str(uid), "id": str(iid)}
        assert _heard(listener) == [expected]  # the order itself

        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            JobRunner(conn).run("compute.provision_instance")
        assert _heard(listener) == [expected, expected]  # provisioning, then running
        with factory() as db:
            assert (db.get(Instance, iid) or Instance()).status == "running"

        # A transition whose transaction rolls back is never announced.
        def fail_after_the_change() -> None:
            with jobs.unit_of_work() as (db, _):
                found = db.get(Instance, iid)
                assert found is not None
                compute.set_status(found, "stopped")
                db.flush()
                raise RuntimeError("the job failed after the change")

        with pytest.raises(RuntimeError):
            fail_after_the_change()
        assert _heard(listener) == []

        # A power action requested by the customer, then done by the job: each commit once.
        with factory() as db:
            found = db.get(Instance, iid)
            assert found is not None
            compute.request_action(db=db, instance=found, action="stop")
            db.commit()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            JobRunner(conn).run("compute.instance_action")
        assert _heard(listener) == [expected, expected]
        with factory() as db:
            found = db.get(Instance, iid)
            assert found is not None and found.status == "stopped"
            compute.rename_instance(db=db, instance=found, name="renamed")
            db.commit()
        assert _heard(listener) == [expected]
    finally:
        engine.dispose()


def test_a_suspension_by_billing_is_announced(
    settings: Settings, fresh_database_url: str, listener: psycopg.Connection
) -> None:
    engine = create_engine(fresh_database_url)
    try:
        with Session(engine) as db:
            make_node(db)
            make_pool(db, "198.18.41.0/29")
            owner = make_user(db, balance="100.00")
            body = InstanceCreate(
                name="web-2", product="nano", region="local", image="tiny-linux",
                billing_cycle="monthly",
            )  # fmt: skip
            instance = flows.order_instance(db=db, owner=owner, body=body)
            compute.set_status(instance, "running")
            db.commit()
            _heard(listener)
            assert compute.suspend_instance(db=db, instance=instance, reason="unpaid")
            db.commit()
            heard = _heard(listener)
            expected = {"kind": "instance", "user": str(owner.id), "id": str(instance.id)}
        assert heard == [expected]
    finally:
        engine.dispose()
