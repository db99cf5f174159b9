"""HTTP load for benchmarks: ``wrk`` (Debian's package) against a server on loopback, and a
served platform in a subprocess (``vmcloud serve``) so the load generator and the server do not
share a Python interpreter."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx/3xx responses and socket errors

    def summary(self) -> str:
        return (
            f"{self.requests_per_second:,.0f} req/s, p50 {self.p50_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms"
        )


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    connections: int = 32,
    threads: int = 2,
    seconds: float = 10,
    script: Path | None = None,
) -> LoadResult:
    """``wrk --latency`` for ``seconds``; every non-2xx/3xx response counts as an error.
    ``script``: a Lua script for wrk (``-s``), e.g. to POST or to vary each request."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (scripts/bootstrap.sh installs it)")
    command = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
    ]
    if script is not None:
        command += ["-s", str(script)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(n) for n in match.groups())
    return LoadResult(rps, p50, p99, requests, errors)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(
    argv: list[str],
    env: Mapping[str, str],
    *,
    what: str,
    port: int,
    cwd: Path | None = None,
    timeout: float = 180,
) -> Iterator[str]:
    """A server process listening on ``port`` until the block ends; yields its base URL once
    its ``/healthz`` answers 200. Terminated (killed after 30 s) at the end."""
    # Its log goes to a file: a pipe that nobody reads while the server runs would stop it at
    # its first line past 64 KiB.
    log = tempfile.NamedTemporaryFile(prefix="vmc-bench-log-", dir="/tmp")  # noqa: SIM115
    process = subprocess.Popen(argv, env=dict(env), cwd=cwd, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                stderr = Path(log.name).read_text(errors="replace")
                raise RuntimeError(f"{what} exited: {stderr[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not answer /healthz within {timeout:.0f} s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextmanager
def served(
    database_url: str,
    *,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    workers: int = 1,
    command: Callable[[int], list[str]] | None = None,
) -> Iterator[str]:
    """``vmcloud serve --workers N`` (API only, no worker) on a free port; yields its base URL.
    One API process unless asked, so figures are per process. ``command(port)`` replaces the
    command line (a variant of the server, e.g. uvicorn with another HTTP parser)."""
    port = free_port()
    argv = (
        command(port)
        if command is not None
        else [sys.executable, "-m", "vmcloud", "serve", "--workers", str(workers), *args]
    )
    data_dir = Path(tempfile.mkdtemp(prefix="vmc-bench-serve-", dir="/tmp"))
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VMCLOUD_DATA_DIR": str(data_dir),
        "VMCLOUD_PORT": str(port),
        "VMCLOUD_HOST": "127.0.0.1",
        "VMCLOUD_LOG_LEVEL": "warning",
        **(env or {}),
    }
    try:
        with running(argv, environment, what="vmcloud serve", port=port) as base:
            yield base
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
