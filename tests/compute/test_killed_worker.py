"""A worker killed (SIGKILL) while it provisions a real VM: after the reconciler's next pass no
instance is stuck in a transitional state, no VM is orphaned and no address leaks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text, update

from tests.compute.conftest import LIBVIRT_URI, drop_pool
from tests.factories.accounts import make_user
from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from vmcloud.catalog.models import Image
from vmcloud.compute import nodes, reconcile, service
from vmcloud.compute.models import TRANSITIONAL, Instance, Node
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.compute.tiny_image import TinyImage
from vmcloud.config import Settings
from vmcloud.core import jobs
from vmcloud.core.mail import MailboxMailer
from vmcloud.db.session import make_engine, make_session_factory


@pytest.fixture
def storage() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vmc-kill-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    drop_pool(nodes.pool_name(str(path)))
    shutil.rmtree(path, ignore_errors=True)


def test_reconciler_repairs_a_provision_cut_short(
    settings: Settings,
    fresh_database_url: str,
    tiny: TinyImage,
    storage: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = settings.model_copy(
        update={
            "database_url": fresh_database_url,
            "data_dir": tmp_path,
            "stale_transition_seconds": 1,
        }
    )
    engine = make_engine(own)
    sessions = make_session_factory(engine)
    try:
        with sessions() as db:
            node = make_node(
                db, driver="libvirt", uri=LIBVIRT_URI, storage_dir=str(storage), name="kill-node"
            )
            make_pool(db, "198.18.50.0/29")
            make_product(
                db,
                slug="kill-tiny",
                specs_json={"vcpus": 1, "memory_mb": 160, "disk_gb": 1},
                pricing_json={"hourly": "0.01"},
            )
            db.execute(
                update(Image)
                .where(Image.slug == "tiny-linux")
                .values(
                    boot_json={
                        "kind": "kernel",
                        "kernel": str(tiny.kernel),
                        "initrd": str(tiny.initrd),
                        "cmdline": tiny.cmdline,
                    }
                )
            )
            owner = make_user(db, balance="500.00")
            ids = []
            for n in range(3):
                body = InstanceCreate(
                    name=f"victim-{n}",
                    product="kill-tiny",
                    region="local",
                    image="tiny-linux",
                    billing_cycle="hourly",
                )
                ids.append(service.create_instance(db=db, owner=owner, body=body).id)
            db.commit()
            node_id = node.id

        env = {k: v for k, v in os.environ.items() if not k.startswith("VMCLOUD_")}
        env |= {"DATABASE_URL": fresh_database_url, "VMCLOUD_DATA_DIR": str(tmp_path)}
        worker = subprocess.Popen(
            [sys.executable, "-m", "vmcloud", "worker", "--concurrency", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Kill it the moment it has started provisioning the second instance.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with sessions() as db:
                second = db.get(Instance, ids[1])
                assert second is not None
                if second.status in ("provisioning", "running"):
                    break
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)

        time.sleep(1.2)  # past stale_transition_seconds
        with sessions() as db:
            # A minute later the dead worker's heartbeat is stale.
            db.execute(
                text("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'")
            )
            db.commit()
        monkeypatch.setattr(jobs, "_runtime", None)
        jobs.configure(jobs.Runtime(own, sessions, MailboxMailer(tmp_path / "mail", "x@y")))
        with sessions() as db:
            reconcile.reconcile_all(db)
            db.commit()

        with sessions() as db:
            node = db.get(Node, node_id)
            assert node is not None
            driver = nodes.driver_for(node)
            on_node = set(driver.list())
            statuses = {}
            for instance_id in ids:
                instance = db.get(Instance, instance_id)
                assert instance is not None
                statuses[instance_id] = instance.status
                # Nothing stuck mid-way (a pending one simply waits for the next worker).
                assert instance.status not in set(TRANSITIONAL) - {"pending"}, instance.status
                if instance.status == "running":
                    assert instance_id in on_node
                if instance.status in ("error", "pending"):
                    assert instance_id not in on_node
                assert instance.ip_address is not None  # still held: released on delete
            # Every VM on the node belongs to a live instance: no orphans. (A worker killed
            # between defining a VM and starting it leaves it defined but off: the instance is
            # then settled as stopped, which the customer can start.)
            assert on_node <= {i for i, s in statuses.items() if s in ("running", "stopped")}, (
                statuses
            )
            for instance_id in on_node:
                driver.destroy(instance_id)
    finally:
        engine.dispose()
