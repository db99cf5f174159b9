"""Fault injection on real processes: a PostgreSQL cluster of the test's own (so it can be
stopped without disturbing the rest of the suite) and ``vmcloud`` processes started, killed
with SIGKILL and restarted the way an operator's supervisor would."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.compute.conftest import tiny  # noqa: F401  (the session's tiny image)
from vmcloud.config import Settings
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres
from vmcloud.db.session import make_engine

# Fast failure detection for the tests; production defaults are in config.py.
FAST_RECOVERY = {
    "VMCLOUD_WORKER_HEARTBEAT_SECONDS": "1",
    "VMCLOUD_JOB_STALLED_AFTER_SECONDS": "5",
}


@dataclass
class PrivatePostgres:
    server: EmbeddedPostgres
    url: str
    engine: Engine

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()


@pytest.fixture
def private_pg(settings: Settings) -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="vmc-f-", dir="/tmp"))
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg", durable=False).start()
    server.create_database("vmcloud")
    url = server.url("vmcloud")
    migrate.upgrade(url)
    engine = make_engine(settings, url)
    try:
        yield PrivatePostgres(server, url, engine)
    finally:
        engine.dispose()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    """A ``vmcloud`` process with its output in a file (read after it ends, or while it runs)."""

    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int = 0
    popen: subprocess.Popen[bytes] | None = None
    runs: int = field(default=0)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Process:
        self.runs += 1
        with open(self.log, "ab") as out:
            out.write(f"\n=== run {self.runs}\n".encode())
            # A process group of its own: kill() takes the command and every process it
            # started (API processes, the worker child) at once, as a supervisor such as
            # systemd does when the service dies.
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL to the command and everything it started."""
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self) -> int:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return int(self.popen.returncode)

    def wait_ready(self, timeout: float = 90) -> None:
        wait_until(lambda: self._ready(), timeout, f"{self.base} never became ready")

    def _ready(self) -> bool:
        assert self.alive(), self.output()[-3000:]
        try:
            return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False


def vmcloud_env(url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCLOUD_")}
    env |= {
        "DATABASE_URL": url,
        "VMCLOUD_DATA_DIR": str(data_dir),
        "VMCLOUD_LOG_FORMAT": "json",
        **FAST_RECOVERY,
        **extra,
    }
    return env


@pytest.fixture
def vmcloud(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Make ``vmcloud`` processes (``serve --worker`` by default); all are stopped afterwards."""
    made: list[Process] = []

    def make(url: str, *args: str, **extra: str) -> Process:
        port = free_port()
        argv = [sys.executable, "-m", "vmcloud", *(args or ("serve", "--worker"))]
        env = vmcloud_env(url, tmp_path, VMCLOUD_PORT=str(port), **extra)
        process = Process(argv, env, tmp_path / f"vmcloud-{len(made)}.log", port)
        made.append(process)
        return process

    yield make
    for process in made:
        if process.popen is not None:
            process.stop()


def wait_until(check: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(message)


def scalar(engine: Engine, sql: str, **params: object) -> object:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()
