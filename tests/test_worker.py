"""``vmcloud worker``: a worker process alone picks up committed jobs and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tests.factories.accounts import make_user
from tests.helpers import Mailbox
from vmcloud.accounts import tasks
from vmcloud.config import Settings
from vmcloud.core import jobs
from vmcloud.db.session import make_engine

pytestmark = pytest.mark.slow


def test_worker_process_sends_a_queued_email(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(settings, fresh_database_url)
    try:
        with Session(engine) as db:
            user = make_user(db, email="queued@example.com", email_verified=False)
            jobs.defer(db, tasks.send_verification_email, user_id=str(user.id))
            db.commit()
    finally:
        engine.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCLOUD_")}
    env |= {"DATABASE_URL": fresh_database_url, "VMCLOUD_DATA_DIR": str(tmp_path)}
    # Its log goes to a file: a pipe read only at the end would stop the worker at 64 KiB.
    log = tmp_path / "worker.log"
    with open(log, "w") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "vmcloud", "worker", "--concurrency", "1"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    mailbox = Mailbox(tmp_path / "mail")
    try:
        deadline = time.monotonic() + 30
        while not mailbox.to("queued@example.com") and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        assert mailbox.to("queued@example.com"), "the worker sent nothing"
        assert "/verify-email?token=" in mailbox.to("queued@example.com")[0].get_content()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0, log.read_text(errors="replace")[-2000:]
