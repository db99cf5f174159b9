"""``vmcloud serve --workers 2`` caps request headers and bodies itself, not only behind a proxy: an
oversized header block is refused by the HTTP server, a body declared too large is 413 before
any of it is sent."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Served:
    port: int
    pid: int

    def rss_kib(self) -> int:
        """Resident memory of the API processes (the children serving the port)."""
        children = [
            int(child)
            for task in Path(f"/proc/{self.pid}/task").glob("*")
            for child in (task / "children").read_text().split()
        ]
        total = 0
        for pid in children:
            if "spawn_main" not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        assert total, "no API process found"
        return total


pytestmark = pytest.mark.slow


def _serve(database_url: str, data_dir: Path) -> Iterator[Served]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCLOUD_")}
    env |= {
        "DATABASE_URL": database_url,
        "VMCLOUD_DATA_DIR": str(data_dir),
        "VMCLOUD_PORT": str(port),
    }
    # Its log goes to a file: a pipe read only at the end stops every process writing to it
    # once it holds 64 KiB.
    log = data_dir / "serve.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            # Two API processes: the limits hold in the processes uvicorn starts.
            [sys.executable, "-m", "vmcloud", "serve", "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        deadline = time.monotonic() + 180  # a parent and two children start Python on a busy box
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError("vmcloud serve never answered")
        yield Served(port, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text(errors="replace")[-2000:]


@pytest.fixture(scope="module")
def served(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the tests that only send what it refuses (starting its three Python
    processes was most of each test's time)."""
    yield from _serve(module_database_url, tmp_path_factory.mktemp("served"))


@pytest.fixture
def fresh_served(fresh_database_url: str, tmp_path: Path) -> Iterator[Served]:
    """A server of the test's own, for measuring its memory from a clean start."""
    yield from _serve(fresh_database_url, tmp_path)


def _exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` and read one response (or whatever arrives before the server closes)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(request)
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    return received


def _get_with_header(size: int) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * size + b"\r\n\r\n"


def test_headers_over_the_limit_are_refused_by_the_server(served: Served) -> None:
    port = served.port
    assert _exchange(port, _get_with_header(8 * 1024)).startswith(b"HTTP/1.1 200")
    refused = _exchange(port, _get_with_header(20 * 1024))
    assert refused.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), refused[:200]
    # A megabyte of headers is never taken in (the connection may be cut before an answer).
    assert not _exchange(port, _get_with_header(1024 * 1024)).startswith(b"HTTP/1.1 200")
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200


def test_a_body_declared_too_large_is_413_before_it_is_sent(served: Served) -> None:
    started = time.monotonic()
    answer = _exchange(
        served.port,
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 314572800\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer
    assert time.monotonic() - started < 5


def test_a_streamed_body_is_cut_off_without_growing_the_process(fresh_served: Served) -> None:
    before = fresh_served.rss_kib()
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", fresh_served.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(64 * 16):  # 64 MiB
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert fresh_served.rss_kib() - before < 16 * 1024
