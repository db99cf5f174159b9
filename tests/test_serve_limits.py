"""``vmcloud serve`` caps request headers and bodies itself, not only behind a proxy: an
oversized header block is refused by the HTTP server, a body declared too large is 413 before
any of it is sent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(fresh_database_url: str, tmp_path: Path) -> Iterator[int]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCLOUD_")}
    env |= {
        "DATABASE_URL": fresh_database_url,
        "VMCLOUD_DATA_DIR": str(tmp_path),
        "VMCLOUD_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "vmcloud", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError("vmcloud serve never answered")
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]


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


def test_headers_over_the_limit_are_refused_by_the_server(served: int) -> None:
    assert _exchange(served, _get_with_header(8 * 1024)).startswith(b"HTTP/1.1 200")
    refused = _exchange(served, _get_with_header(20 * 1024))
    assert refused.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), refused[:200]
    # A megabyte of headers is never taken in (the connection may be cut before an answer).
    assert not _exchange(served, _get_with_header(1024 * 1024)).startswith(b"HTTP/1.1 200")
    assert httpx.get(f"http://127.0.0.1:{served}/healthz").status_code == 200


def test_a_body_declared_too_large_is_413_before_it_is_sent(served: int) -> None:
    started = time.monotonic()
    answer = _exchange(
        served,
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 314572800\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer
    assert time.monotonic() - started < 5
