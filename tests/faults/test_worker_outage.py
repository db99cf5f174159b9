"""``vmcloud worker`` through a database outage: it reconnects and resumes, saying so loudly;
when the database stays away past ``worker_give_up_seconds`` it exits 1."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tests.factories.accounts import make_user
from tests.faults.conftest import PrivatePostgres, Process, scalar, wait_until
from tests.helpers import Mailbox
from vmcloud.accounts import tasks
from vmcloud.core import jobs

pytestmark = pytest.mark.slow


def _queue_mail(pg: PrivatePostgres, email: str) -> None:
    with Session(pg.engine) as db:
        user = make_user(db, email=email, email_verified=False)
        jobs.defer(db, tasks.send_verification_email, user_id=str(user.id))
        db.commit()


def _registered(pg: PrivatePostgres) -> bool:
    return bool(scalar(pg.engine, "SELECT count(*) FROM procrastinate_workers"))


def test_the_worker_survives_a_database_outage(
    private_pg: PrivatePostgres, vmcloud: Callable[..., Process], tmp_path: Path
) -> None:
    worker = vmcloud(private_pg.url, "worker", "--concurrency", "2").start()
    wait_until(lambda: _registered(private_pg), 30, "the worker never registered")

    private_pg.stop()
    time.sleep(15)
    assert worker.alive(), worker.output()[-3000:]
    private_pg.start()
    private_pg.engine.dispose()  # the test's own pooled connections died with the server

    _queue_mail(private_pg, "after-outage@example.com")
    mailbox = Mailbox(tmp_path / "mail")
    wait_until(
        lambda: bool(mailbox.to("after-outage@example.com")),
        40,
        f"no mail after the outage:\n{worker.output()[-3000:]}",
    )
    assert worker.alive()
    assert "worker.stopped_unexpectedly" in worker.output()  # loudly, not silently
    assert worker.stop() == 0


def test_the_worker_exits_1_when_the_database_stays_away(
    private_pg: PrivatePostgres, vmcloud: Callable[..., Process]
) -> None:
    worker = vmcloud(
        private_pg.url, "worker", "--concurrency", "1", VMCLOUD_WORKER_GIVE_UP_SECONDS="4"
    ).start()
    wait_until(lambda: _registered(private_pg), 30, "the worker never registered")
    private_pg.stop()
    wait_until(lambda: not worker.alive(), 40, "the worker did not give up")
    assert worker.popen is not None and worker.popen.returncode == 1
    assert "worker.failed" in worker.output()
    assert "The worker gave up" in worker.output()
