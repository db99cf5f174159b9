"""Fault injection on the real platform: ``vmcloud serve --worker`` on a PostgreSQL of the
test's own, real VMs on this machine's libvirt. The serving process is killed with SIGKILL
during a billing run and during provisioning, and PostgreSQL is stopped for 15 s while requests
and jobs are under way. After each fault the platform must come back by itself: billing runs
again, mail queued before the outage is sent, no instance is left in a transitional state, no
capacity or address is held by a deleted instance, no VM is orphaned, and every balance equals
its ledger."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.compute.conftest import LIBVIRT_URI, drop_pool
from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import boot_tiny_image, make_node, make_pool
from tests.faults.conftest import PrivatePostgres, Process, scalar, vmcloud_env, wait_until
from tests.helpers import Mailbox
from vmcloud.compute import nodes, pools
from vmcloud.compute.models import TRANSITIONAL, Instance, Node
from vmcloud.compute.tiny_image import TinyImage

pytestmark = pytest.mark.slow

API = "/api/v1"


@pytest.fixture
def storage() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vmc-fault-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    drop_pool(pools.pool_name(str(path)))
    shutil.rmtree(path, ignore_errors=True)


class Platform:
    """What a test set up: a libvirt node, an address pool, a tiny plan and a customer."""

    def __init__(self, pg: PrivatePostgres, tiny: TinyImage, storage: Path) -> None:
        self.pg = pg
        with Session(pg.engine) as db:
            node = make_node(
                db, driver="libvirt", uri=LIBVIRT_URI, storage_dir=str(storage), name="f-node"
            )
            make_pool(db, "198.18.60.0/28")
            make_product(
                db,
                slug="fault-tiny",
                specs_json={"vcpus": 1, "memory_mb": 160, "disk_gb": 1},
                pricing_json={"hourly": "0.01"},
            )
            boot_tiny_image(db, tiny)
            self.username = make_user(db, balance="100.00").username
            db.commit()
            self.node_id = node.id
        self.token = ""

    def login(self, base: str) -> dict[str, str]:
        if not self.token:
            response = httpx.post(
                f"{base}{API}/auth/login",
                json={"login": self.username, "password": PASSWORD},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            self.token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self.token}"}

    def order(self, base: str, name: str) -> str:
        response = httpx.post(
            f"{base}{API}/instances",
            json={
                "name": name,
                "product": "fault-tiny",
                "region": "local",
                "image": "tiny-linux",
                "billing_cycle": "hourly",
            },
            headers=self.login(base),
            timeout=30,
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def statuses(self) -> dict[str, str]:
        with Session(self.pg.engine) as db:
            rows = db.execute(select(Instance.id, Instance.status)).all()
        return {str(row[0]): str(row[1]) for row in rows}

    def settled(self) -> bool:
        return not set(self.statuses().values()) & set(TRANSITIONAL)

    def vms(self) -> set[str]:
        with Session(self.pg.engine) as db:
            node = db.get(Node, self.node_id)
            assert node is not None
            return {str(vm) for vm in nodes.driver_for(node).list()}

    def assert_sound(self) -> None:
        """Nothing stuck, nothing orphaned, nothing leaked, the ledger agrees."""
        statuses = self.statuses()
        assert not set(statuses.values()) & set(TRANSITIONAL), statuses
        running = {i for i, s in statuses.items() if s in ("running", "stopped")}
        assert self.vms() == running, (self.vms(), statuses)
        with Session(self.pg.engine) as db:
            node = db.get(Node, self.node_id)
            assert node is not None
            live = [
                i
                for i in db.scalars(select(Instance).where(Instance.deleted_at.is_(None)))
                if i.status != "error"
            ]
            # A deleted instance holds no capacity: the node's allocation is what live
            # instances reserved, no more.
            assert node.allocated_vcpus == sum(i.reserved_vcpus or 0 for i in live)
            # A deleted instance holds no address: no two live rows share one, and none of
            # the deleted ones is counted as in use.
            held = db.execute(
                text(
                    "SELECT count(*) FROM instances WHERE deleted_at IS NULL"
                    " AND ip_address IS NOT NULL AND status <> 'deleted'"
                )
            ).scalar_one()
            assert held == len([i for i in statuses.values() if i != "deleted"])
        verify = subprocess.run(
            [sys.executable, "-m", "vmcloud", "billing", "verify"],
            env=vmcloud_env(self.pg.url, Path(tempfile.gettempdir())),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr

    def cleanup(self) -> None:
        with Session(self.pg.engine) as db:
            node = db.get(Node, self.node_id)
            if node is not None:
                driver = nodes.driver_for(node)
                for vm in driver.list():
                    driver.destroy(vm)


@pytest.fixture
def platform(
    private_pg: PrivatePostgres,
    tiny: TinyImage,
    storage: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Platform]:
    monkeypatch.setenv("VMCLOUD_ALLOW_FAKE_DRIVER", "0")
    made = Platform(private_pg, tiny, storage)
    yield made
    made.cleanup()


def _job(pg: PrivatePostgres, job_id: int) -> str:
    return str(
        scalar(pg.engine, "SELECT status::text FROM procrastinate_jobs WHERE id = :i", i=job_id)
    )


def _queue_billing_run(pg: PrivatePostgres) -> int:
    with pg.engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW('billing', 'billing.run',"
                    " 0, 'billing-run', NULL, CAST(:args AS jsonb), NULL)]"
                    "::procrastinate_job_to_defer_v1[]))"
                ),
                {"args": '{"timestamp": 0}'},
            ).scalar_one()
        )


def test_kill_9_during_a_billing_run(platform: Platform, vmcloud: Callable[..., Process]) -> None:
    pg = platform.pg
    server = vmcloud(pg.url).start()
    server.wait_ready()
    # Hold the billing run in the middle of its work: it waits on a table lock held here.
    blocker = pg.engine.connect()
    blocker.begin()
    blocker.execute(text("LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE"))
    _queue_billing_run(pg)
    # The worker's own per-minute run may take the "billing-run" lock first when the clock
    # crosses a minute; either way one billing run is in the middle of its work.
    running: list[int] = []

    def a_run_is_held() -> bool:
        doing = scalar(
            pg.engine,
            "SELECT min(id) FROM procrastinate_jobs"
            " WHERE task_name = 'billing.run' AND status = 'doing'",
        )
        waiting = scalar(
            pg.engine,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'vmcloud' AND wait_event_type = 'Lock'",
        )
        if doing is None or not waiting:
            return False
        running[:] = [int(doing)]
        return True

    wait_until(a_run_is_held, 30, "the billing run never started")
    killed = running[0]
    server.kill()
    blocker.rollback()
    blocker.close()
    assert _job(pg, killed) == "doing"  # left behind by the dead process

    time.sleep(6)  # an operator's supervisor restarts the service a few seconds later
    server.start()
    server.wait_ready()
    # The dead run is retried (billing is idempotent by period key) and the lock is free.
    wait_until(lambda: _job(pg, killed) == "succeeded", 60, f"{server.output()[-3000:]}")
    later = _queue_billing_run(pg)
    wait_until(lambda: _job(pg, later) == "succeeded", 30, "billing did not run again")
    platform.assert_sound()


def test_kill_9_during_provisioning(platform: Platform, vmcloud: Callable[..., Process]) -> None:
    server = vmcloud(platform.pg.url).start()
    server.wait_ready()
    ids = [platform.order(server.base, f"victim-{n}") for n in range(3)]
    wait_until(
        lambda: "provisioning" in platform.statuses().values(), 60, "nothing was provisioned"
    )
    server.kill()

    time.sleep(6)
    server.start()
    server.wait_ready()
    wait_until(platform.settled, 120, f"still settling: {platform.statuses()}")
    # The interrupted provisioning was retried (it clears what the dead attempt left).
    assert set(platform.statuses().values()) == {"running"}, platform.statuses()
    platform.assert_sound()

    headers = platform.login(server.base)
    for instance_id in ids:
        response = httpx.delete(f"{server.base}{API}/instances/{instance_id}", headers=headers)
        assert response.status_code == 202, response.text
    wait_until(
        lambda: set(platform.statuses().values()) == {"deleted"},
        90,
        f"not deleted: {platform.statuses()}",
    )
    platform.assert_sound()
    assert platform.vms() == set()


def _hammer(base: str, headers: dict[str, str], stop: threading.Event, seen: list[int]) -> None:
    with httpx.Client(base_url=base, timeout=20) as http:
        while not stop.is_set():
            for method, path in (
                ("GET", f"{API}/instances"),
                ("GET", f"{API}/products"),
                ("GET", f"{API}/billing/balance"),
            ):
                try:
                    seen.append(http.request(method, path, headers=headers).status_code)
                except httpx.TransportError:
                    seen.append(0)
            time.sleep(0.1)


def _queue_mail_in(pg: PrivatePostgres, seconds: int) -> None:
    """A verification mail queued now, due in a few seconds: it cannot be sent before the
    outage starts."""
    with Session(pg.engine) as db:
        user = make_user(db, email="during-outage@example.com", email_verified=False)
        db.execute(
            text(
                "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('mail',"
                " 'accounts.send_verification_email', 0, NULL, NULL, CAST(:args AS jsonb),"
                " now() + make_interval(secs => :s))]::procrastinate_job_to_defer_v1[])"
            ),
            {"args": f'{{"user_id": "{user.id}"}}', "s": seconds},
        )
        db.commit()


def test_postgresql_stopped_for_15_s_during_requests_and_jobs(
    platform: Platform, vmcloud: Callable[..., Process], tmp_path: Path
) -> None:
    pg = platform.pg
    server = vmcloud(pg.url).start()
    server.wait_ready()
    headers = platform.login(server.base)
    first = platform.order(server.base, "before")
    wait_until(lambda: platform.statuses()[first] == "running", 90, "never ran")

    seen: list[int] = []
    stop = threading.Event()
    hammer = threading.Thread(target=_hammer, args=(server.base, headers, stop, seen))
    hammer.start()
    try:
        second = platform.order(server.base, "during")  # pending as the database goes
        assert httpx.delete(f"{server.base}{API}/instances/{first}", headers=headers).is_success
        _queue_mail_in(pg, 3)
        pg.stop()
        time.sleep(2)
        down = httpx.get(f"{server.base}/readyz", timeout=10)
        time.sleep(13)
        pg.start()
        pg.engine.dispose()
        server.wait_ready(timeout=30)
    finally:
        stop.set()
        hammer.join(timeout=60)

    assert down.status_code == 503
    assert 503 in seen, "no request met the outage"
    assert not [s for s in seen if s >= 500 and s != 503], sorted(set(seen))
    assert {s for s in seen if s < 500} <= {200}, sorted(set(seen))

    mailbox = Mailbox(tmp_path / "mail")
    wait_until(
        lambda: bool(mailbox.to("during-outage@example.com")),
        60,
        f"mail queued before the outage was never sent:\n{server.output()[-3000:]}",
    )
    wait_until(platform.settled, 120, f"still settling: {platform.statuses()}")
    assert platform.statuses() == {first: "deleted", second: "running"}
    platform.assert_sound()
    # The worker said loudly that it lost the database, and came back.
    assert "worker.stopped_unexpectedly" in server.output()
    assert httpx.get(f"{server.base}/readyz").json()["worker"] == "running"
