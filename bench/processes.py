"""Several processes, one command: a simple authenticated read (``GET /api/v1/me``) under
``wrk`` at 32 connections, served

- by one API process with h11, the HTTP parser ``vmcloud serve`` uses (it caps the request
  line and headers, see core/size_limits.py);
- by one API process with httptools (uvicorn's faster parser, no header cap), started as
  ``uvicorn vmcloud.cli:serve_process_app --factory --http httptools``;
- by ``vmcloud serve --workers 2`` (h11), two processes on one port.

Run: .venv/bin/python -m bench.processes [--tiny]
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h11
import httptools
import httpx
from sqlalchemy.orm import Session

from bench import load, report
from vmcloud.accounts.models import User
from vmcloud.accounts.passwords import hash_password
from vmcloud.config import Settings
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres
from vmcloud.db.session import make_engine

PASSWORD = "benchmark password"


@contextmanager
def _database() -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="vmc-bench-procs-", dir="/tmp"))
    root.chmod(0o711)
    server = EmbeddedPostgres(root / "pg", durable=False).start()
    try:
        server.create_database("vmcloud")
        url = server.url("vmcloud")
        migrate.upgrade(url)
        engine = make_engine(Settings(data_dir=root, database_url=url), url)
        with Session(engine) as db:
            db.add(
                User(
                    email="bench@example.com",
                    username="bench",
                    password_hash=hash_password(PASSWORD),
                    role="customer",
                    status="active",
                    email_verified=True,
                )
            )
            db.commit()
        engine.dispose()
        yield url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _httptools(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "vmcloud.cli:serve_process_app", "--factory",
        "--http", "httptools", "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--no-server-header",
    ]  # fmt: skip


def _measure(base: str, seconds: float) -> Measured:
    login = {"login": "bench", "password": PASSWORD}
    token = httpx.post(f"{base}/api/v1/auth/login", json=login, timeout=30).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{base}/api/v1/me", headers=headers).status_code == 200
    load.wrk(f"{base}/api/v1/me", headers=headers, seconds=min(seconds, 2))  # warm up
    cpu = _cpu_seconds(base)
    result = load.wrk(f"{base}/api/v1/me", headers=headers, seconds=seconds)
    return Measured(result, (_cpu_seconds(base) - cpu) / max(result.requests, 1) * 1e6)


@dataclass(frozen=True)
class Measured:
    load: load.LoadResult
    cpu_us_per_request: float  # the serving process's CPU time per request (one process only)


def _cpu_seconds(base: str) -> float:
    """CPU time of the process that answers /metrics (all of it, with one API process): a
    figure that, unlike throughput, hardly depends on what else the machine is doing."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    match = re.search(r"^process_cpu_seconds_total ([\d.e+]+)$", text, re.MULTILINE)
    assert match, "no process_cpu_seconds_total"
    return float(match.group(1))


def _figures(measured: Measured, *, cpu: bool = True) -> str:
    result = measured.load
    errors = f", {result.errors} errors (wrk timeouts)" if result.errors else ""
    per_request = f", {measured.cpu_us_per_request:,.0f} µs CPU per request" if cpu else ""
    return result.summary() + errors + per_request


_REQUEST = (
    b"GET /api/v1/me HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAuthorization: Bearer "
    + b"x" * 300
    + b"\r\n\r\n"
)


class _Callbacks:
    def on_url(self, url: bytes) -> None: ...
    def on_header(self, name: bytes, value: bytes) -> None: ...
    def on_headers_complete(self) -> None: ...


def _with_h11() -> None:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    connection.receive_data(_REQUEST)
    connection.next_event()
    connection.next_event()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    connection.send(h11.Response(status_code=200, headers=headers))
    connection.send(h11.Data(data=b"{}"))
    connection.send(h11.EndOfMessage())


def _with_httptools() -> None:
    httptools.HttpRequestParser(_Callbacks()).feed_data(_REQUEST)
    b"".join((b"HTTP/1.1 200 OK\r\n", b"content-type: application/json\r\n",
              b"content-length: 2\r\n\r\n", b"{}"))  # fmt: skip


def _parse_us(parse: Callable[[], None], number: int) -> float:
    """The parser alone: one request parsed and one response framed, in microseconds."""
    return min(timeit.repeat(parse, number=number, repeat=5)) / number * 1e6


def run(tiny: bool = False) -> list[report.Row]:
    seconds = 1 if tiny else 10
    with _database() as url:
        with load.served(url) as base:
            h11 = _measure(base, seconds)
        with load.served(url, command=_httptools) as base:
            httptools = _measure(base, seconds)
        with load.served(url, workers=2) as base:
            two = _measure(base, seconds)
    ratio = httptools.cpu_us_per_request / h11.cpu_us_per_request
    scale = two.load.requests_per_second / h11.load.requests_per_second
    number = 200 if tiny else 20_000
    h11_us, httptools_us = _parse_us(_with_h11, number), _parse_us(_with_httptools, number)
    return [
        report.Row(
            "HTTP parsing and framing of one request, h11 vs httptools (parsers alone)",
            "reference",
            f"h11 {h11_us:.0f} µs, httptools {httptools_us:.0f} µs",
            None,
            f"{(h11_us - httptools_us) / h11.cpu_us_per_request:.0%} of h11's CPU per request",
        ),
        report.Row("GET /api/v1/me, 1 API process, h11", "reference", _figures(h11), None),
        report.Row(
            "GET /api/v1/me, 1 API process, httptools",
            "switch only if clearly faster and the header cap holds",
            _figures(httptools),
            None,
            f"CPU per request {ratio:.2f}x h11's",
        ),
        report.Row(
            "GET /api/v1/me, `serve --workers 2` (h11)",
            "more than one process's throughput",
            _figures(two, cpu=False),
            scale > 1.0,
            f"{scale:.2f}x one process; {report.load()}",
        ),
    ]


if __name__ == "__main__":
    report.main(run)
