"""Several processes, one command: ``vmcloud serve --workers 2 --worker`` on one PostgreSQL.

Two API processes share the port and a supervised ``vmcloud worker`` child runs the jobs.
What must hold across processes lives in PostgreSQL (rate limits, idempotency keys, the job
queue), so it holds whichever process answers. To choose the process that answers a request,
the other one is paused (SIGSTOP) while the request is made on a new connection: a paused
process cannot accept it. Every log line carries its process id, and every response its
request id, so each answer is checked against the process that logged it.

The module's platform is stopped with SIGTERM at the end: it must exit 0 and leave no process
behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.faults.conftest import Process, free_port, scalar, vmcloud_env, wait_until
from tests.helpers import Mailbox
from vmcloud.config import Settings
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres
from vmcloud.db.session import make_engine

pytestmark = pytest.mark.slow

API = "/api/v1"


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z, ...), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return None


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


@dataclass
class Platform:
    server: Process
    engine: Engine
    mail: Mailbox
    admin: str
    customer_id: str

    @property
    def pid(self) -> int:
        assert self.server.popen is not None
        return self.server.popen.pid

    def api_pids(self) -> list[int]:
        return sorted(p for p in _children(self.pid) if "spawn_main" in _cmdline(p))

    def worker_pid(self) -> int | None:
        workers = [p for p in _children(self.pid) if "vmcloud worker" in _cmdline(p)]
        assert len(workers) <= 1, workers
        return workers[0] if workers else None

    def log_lines(self) -> list[dict[str, object]]:
        lines = []
        for line in self.server.output().splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return lines

    def serving(self, pid: int) -> bool:
        return any(
            line.get("pid") == pid and line.get("event") == "Application startup complete."
            for line in self.log_lines()
        )

    def answered_by(self, response: httpx.Response) -> int:
        """The pid of the process that logged this response's request."""
        request_id = response.headers["x-request-id"]
        found: list[int] = []

        def logged() -> bool:
            found[:] = [
                int(str(line["pid"]))
                for line in self.log_lines()
                if line.get("event") == "request" and line.get("request_id") == request_id
            ]
            return bool(found)

        wait_until(logged, 10, f"request {request_id} was never logged")
        return found[0]

    def via(self, pid: int, method: str, path: str, **kwargs: object) -> httpx.Response:
        """Make a request that only API process ``pid`` can answer (the others are paused
        meanwhile), and check that it did."""
        others = [p for p in self.api_pids() if p != pid]
        assert pid in self.api_pids() and others, (pid, self.api_pids())
        # Pause the others only once this one serves: uvicorn kills a process that does not
        # answer its health check for 5 s.
        wait_until(lambda: self.serving(pid), 30, f"{pid} never started serving")
        for other in others:
            os.kill(other, signal.SIGSTOP)
        try:
            wait_until(lambda: all(_state(p) == "T" for p in others), 5, "not paused")
            response = httpx.request(method, f"{self.server.base}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]
        finally:
            for other in others:
                os.kill(other, signal.SIGCONT)
        assert self.answered_by(response) == pid
        return response


@pytest.fixture(scope="module")
def platform(settings: Settings) -> Iterator[Platform]:
    root = Path(tempfile.mkdtemp(prefix="vmc-procs-", dir="/tmp"))
    root.chmod(0o711)
    pg = EmbeddedPostgres(root / "pg", durable=False).start()
    engine: Engine | None = None
    try:
        pg.create_database("vmcloud")
        url = pg.url("vmcloud")
        migrate.upgrade(url)
        engine = make_engine(settings, url)
        with Session(engine) as db:
            admin = make_user(db, role="admin").username
            customer = make_user(db)
            db.commit()
            customer_id = str(customer.id)
        port = free_port()
        env = vmcloud_env(url, root, VMCLOUD_PORT=str(port))
        argv = [sys.executable, "-m", "vmcloud", "serve", "--workers", "2", "--worker"]
        server = Process(argv, env, root / "vmcloud.log", port).start()
        platform = Platform(server, engine, Mailbox(root / "mail"), admin, customer_id)
        server.wait_ready(timeout=180)  # readiness includes a worker heartbeat
        wait_until(lambda: len(platform.api_pids()) == 2, 30, "not two API processes")
        yield platform

        # SIGTERM to the parent stops everything it started, and it exits 0.
        started = [*platform.api_pids(), platform.worker_pid()]
        assert server.stop() == 0, server.output()[-3000:]
        wait_until(lambda: not any(_alive(p) for p in started if p), 10, f"left behind: {started}")
    finally:
        if engine is not None:
            engine.dispose()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_both_api_processes_answer_on_one_port(platform: Platform) -> None:
    first, second = platform.api_pids()
    for pid in (first, second):
        assert platform.via(pid, "GET", f"{API}/products").status_code == 200
    assert platform.pid not in (first, second)
    assert platform.worker_pid() not in (first, second)


def test_a_login_limit_is_counted_across_processes(platform: Platform) -> None:
    """Ten attempts per account (accounts/limits.py): five on each process, then the next is
    refused by either."""
    with Session(platform.engine) as db:
        target = make_user(db).username
        db.commit()
    first, second = platform.api_pids()
    wrong = {"login": target, "password": "not the password"}
    for n in range(10):
        answer = platform.via((first, second)[n % 2], "POST", f"{API}/auth/login", json=wrong)
        assert answer.status_code == 401, answer.text
    for pid in (first, second):
        refused = platform.via(pid, "POST", f"{API}/auth/login", json=wrong)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) > 0


def test_an_idempotency_key_replays_on_the_other_process(platform: Platform) -> None:
    first, second = platform.api_pids()
    login = {"login": platform.admin, "password": PASSWORD}
    token = platform.via(first, "POST", f"{API}/auth/login", json=login).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "credit-across-processes"}
    path = f"{API}/admin/users/{platform.customer_id}/credits"
    body = {"amount": "7.50", "reason": "goodwill"}
    done = platform.via(first, "POST", path, json=body, headers=headers)
    assert done.status_code == 201, done.text
    replayed = platform.via(second, "POST", path, json=body, headers=headers)
    assert (replayed.status_code, replayed.json()) == (201, done.json())
    credits = scalar(
        platform.engine,
        "SELECT count(*) FROM transactions WHERE user_id = :u AND type = 'credit'",
        u=platform.customer_id,
    )
    assert credits == 1


def _register(platform: Platform, pid: int, email: str) -> None:
    body = {"email": email, "username": email.split("@")[0], "password": "a good password 1"}
    answer = platform.via(pid, "POST", f"{API}/auth/register", json=body)
    assert answer.status_code == 201, answer.text


def _mail_written_by(platform: Platform, email: str) -> int:
    wait_until(
        lambda: bool(platform.mail.to(email)), 30, f"no mail:\n{platform.server.output()[-3000:]}"
    )
    writers = [
        int(str(line["pid"]))
        for line in platform.log_lines()
        if line.get("event") == "mail.written" and line.get("to") == email
    ]
    assert len(writers) == 1, writers
    return writers[0]


def test_a_job_queued_by_a_request_runs_in_the_worker_process(platform: Platform) -> None:
    _register(platform, platform.api_pids()[0], "queued@example.com")
    assert _mail_written_by(platform, "queued@example.com") == platform.worker_pid()


def test_a_killed_worker_is_restarted_and_runs_jobs_again(platform: Platform) -> None:
    killed = platform.worker_pid()
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    wait_until(
        lambda: platform.worker_pid() not in (None, killed), 30, "the worker was not restarted"
    )
    died = [
        line
        for line in platform.log_lines()
        if line.get("event") == "process.died" and line.get("child_pid") == killed
    ]
    assert died and died[0]["level"] == "error" and died[0]["signal"] == "SIGKILL", died
    _register(platform, platform.api_pids()[-1], "after-restart@example.com")
    assert _mail_written_by(platform, "after-restart@example.com") == platform.worker_pid()
    assert httpx.get(f"{platform.server.base}/readyz").json()["worker"] == "running"


def test_a_killed_api_process_is_replaced_while_the_other_serves(platform: Platform) -> None:
    killed, survivor = platform.api_pids()
    os.kill(killed, signal.SIGKILL)
    for _ in range(5):  # the port keeps answering meanwhile
        assert httpx.get(f"{platform.server.base}{API}/products").status_code == 200
    # A new API process may take a while to import the app on a busy machine (the supervisor
    # gives it a minute: cli.STARTUP_HEALTHCHECK_SECONDS); say what the server logged if not.
    try:
        wait_until(
            lambda: len(platform.api_pids()) == 2 and killed not in platform.api_pids(),
            60,
            "no replacement",
        )
    except AssertionError:
        raise AssertionError(
            f"no replacement: {platform.api_pids()}\n{platform.server.output()[-3000:]}"
        ) from None
    (replacement,) = set(platform.api_pids()) - {survivor}
    assert platform.via(replacement, "GET", f"{API}/products").status_code == 200
