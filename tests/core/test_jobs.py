"""Durable background jobs: queued inside the caller's transaction and run by a real
procrastinate worker against a database of the test's own (these tests really commit)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from tests.factories.accounts import make_user
from tests.helpers import Mailbox
from vmcloud.accounts import tasks
from vmcloud.app import create_app
from vmcloud.config import Settings
from vmcloud.core import jobs
from vmcloud.core.mail import MailboxMailer, Mailer, SmtpMailer
from vmcloud.db.session import make_engine, make_session_factory

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(autouse=True)
def _restore_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    # jobs.configure() sets process-wide state; put back whatever was there before the test.
    monkeypatch.setattr(jobs, "_runtime", None)


@pytest.fixture
def own_settings(settings: Settings, fresh_database_url: str, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"database_url": fresh_database_url, "data_dir": tmp_path})


@pytest.fixture
def own_engine(own_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(own_settings)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(own_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(own_engine)


def _job(engine: Engine, job_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = (
            conn.execute(
                text(
                    "SELECT task_name, queue_name, args, status, attempts,"
                    " scheduled_at > now() AS later FROM procrastinate_jobs WHERE id = :id"
                ),
                {"id": job_id},
            )
            .mappings()
            .one_or_none()
        )
    return dict(row) if row else None


def _queue_verification(sessions: sessionmaker[Session]) -> tuple[str, str, int]:
    """Commit an unverified user and the job that mails them; returns (user id, email, job id)."""
    with sessions() as db:
        user = make_user(db, email_verified=False)
        job_id = jobs.defer(db, tasks.send_verification_email, user_id=str(user.id))
        db.commit()
        return str(user.id), user.email, job_id


def _work_until_idle(settings: Settings, mailer: Mailer, sessions: sessionmaker[Session]) -> None:
    """Run a real worker until the queue has nothing due, as `vmcloud worker` would."""
    assert settings.database_url
    jobs.configure(jobs.Runtime(settings, sessions, mailer))

    async def work() -> None:
        async with worker_app.open_async():
            await worker_app.run_worker_async(
                wait=False, install_signal_handlers=False, concurrency=1, listen_notify=False
            )

    with jobs.worker_app(settings.database_url, 2) as worker_app:
        asyncio.run(asyncio.wait_for(work(), timeout=10))


def _dead_smtp(settings: Settings) -> SmtpMailer:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe closes: every send is refused.
    return SmtpMailer(
        settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"}
        )
    )


def test_defer_in_a_rolled_back_transaction_leaves_no_job(
    own_engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions() as db:
        job_id = jobs.defer(db, tasks.send_verification_email, user_id="not-committed")
        db.rollback()

    assert _job(own_engine, job_id) is None
    with own_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM procrastinate_jobs")).scalar_one() == 0


def test_defer_queues_the_job_when_the_transaction_commits(
    own_engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions() as db:
        job_id = jobs.defer(db, tasks.send_verification_email, user_id="42")
        # Until the caller commits, no worker (no other connection) can see the job.
        assert _job(own_engine, job_id) is None
        db.commit()

    assert _job(own_engine, job_id) == {
        "task_name": "accounts.send_verification_email",
        "queue_name": "mail",
        "args": {"user_id": "42"},
        "status": "todo",
        "attempts": 0,
        "later": None,  # no scheduled_at: due at once
    }


def test_a_real_worker_mails_the_verification_token_and_stores_only_its_hash(
    own_settings: Settings, own_engine: Engine, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    user_id, address, job_id = _queue_verification(sessions)

    mailer = MailboxMailer(tmp_path / "mail", own_settings.mail_from)
    _work_until_idle(own_settings, mailer, sessions)

    mailbox = Mailbox(tmp_path / "mail")
    token = mailbox.last_token(address)
    body = mailbox.to(address)[-1].get_content()
    assert f"{own_settings.public_url}/verify-email?token={token}" in body
    with own_engine.connect() as conn:
        stored = conn.execute(
            text("SELECT token FROM email_verifications WHERE user_id = :id"), {"id": user_id}
        ).scalar_one()
    assert SHA256_HEX.fullmatch(stored)
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    job = _job(own_engine, job_id)
    assert job is not None
    assert job["status"] == "succeeded"
    # The token never passes through the job row that operators can read.
    assert token not in str(job["args"])


def test_a_failing_job_is_kept_for_a_retry_and_its_work_rolled_back(
    own_settings: Settings, own_engine: Engine, sessions: sessionmaker[Session]
) -> None:
    user_id, _, job_id = _queue_verification(sessions)

    _work_until_idle(own_settings, _dead_smtp(own_settings), sessions)

    job = _job(own_engine, job_id)
    assert job is not None
    assert job["status"] == "todo"
    assert job["attempts"] == 1
    assert job["later"] is True  # backed off, not retried in a tight loop
    # The token minted before the send failed was rolled back with the job's unit of work.
    with own_engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM email_verifications WHERE user_id = :id"), {"id": user_id}
        ).scalar_one()
    assert count == 0


def test_a_job_out_of_attempts_ends_failed_and_stays_for_an_operator(
    own_settings: Settings, own_engine: Engine, sessions: sessionmaker[Session]
) -> None:
    _, _, job_id = _queue_verification(sessions)
    # Fast-forward through the retries: the job has already used every attempt it is allowed.
    assert jobs.DEFAULT_RETRY.max_attempts
    with own_engine.begin() as conn:
        conn.execute(
            text("UPDATE procrastinate_jobs SET attempts = :n WHERE id = :id"),
            {"n": jobs.DEFAULT_RETRY.max_attempts, "id": job_id},
        )

    _work_until_idle(own_settings, _dead_smtp(own_settings), sessions)

    job = _job(own_engine, job_id)
    assert job is not None
    assert job["status"] == "failed"


def test_the_app_lifespan_runs_a_worker_that_processes_committed_jobs(
    own_settings: Settings, own_engine: Engine, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    app = create_app(own_settings.model_copy(update={"run_worker": True, "worker_concurrency": 1}))
    with TestClient(app):
        _, address, job_id = _queue_verification(sessions)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            job = _job(own_engine, job_id)
            if job and job["status"] == "succeeded":
                break
            time.sleep(0.1)

    assert job is not None
    assert job["status"] == "succeeded"
    # The lifespan's mailer is the default one: the mailbox under the configured data_dir.
    assert Mailbox(tmp_path / "mail").to(address)
    # Leaving the lifespan stopped the worker cleanly: it unregistered itself.
    with own_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar_one() == 0
