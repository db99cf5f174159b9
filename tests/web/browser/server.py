"""The live server browser tests drive: the real app under uvicorn in a background thread, on a
free port of 127.0.0.1, with a database, data directory and rate-limit namespace of its own and
the job worker running in-process (status changes flow through the real jobs)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import Mailbox
from vmcloud.app import create_app
from vmcloud.config import Settings
from vmcloud.db.session import make_engine, make_session_factory

STARTUP_TIMEOUT = 60.0


@dataclass
class LiveServer:
    url: str  # http://127.0.0.1:<port>, no trailing slash; also the panel's origin
    app: FastAPI
    settings: Settings
    session_factory: sessionmaker[Session]
    mailbox: Mailbox
    # Browser sessions saved by helpers.login, by user id (Playwright storage_state dicts).
    storage_states: dict[uuid.UUID, Any] = field(default_factory=dict)
    # What the arrangement helpers made once per server (the staff member who credits, …).
    memo: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session on the live database that commits when the block ends without error."""
        with self.session_factory() as db, db.begin():
            yield db


def free_socket() -> socket.socket:
    """A listening address of 127.0.0.1 on a port the kernel chose; hand it to serve_in_thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"http://{host}:{port}"


@contextlib.contextmanager
def serve_in_thread(
    app: Any, sock: socket.socket | None = None, *, name: str = "live-server"
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a daemon thread (on ``sock``, else a free port of
    127.0.0.1); yields its base URL once it listens (lifespan done), stops it cleanly after."""
    sock = sock or free_socket()
    url = url_of(sock)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        proxy_headers=False,  # the app believes X-Forwarded-For from trusted_proxies itself
        server_header=False,
        http="h11",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name)
    thread.daemon = True
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise RuntimeError(f"{name} did not start; see the log above")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"{name} did not start within {STARTUP_TIMEOUT:g} s")
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"{name} did not stop within 30 s")


def wait_until_ready(url: str, *, worker: bool, timeout: float = STARTUP_TIMEOUT) -> None:
    """Until ``/readyz`` answers 200 (and reports the in-process worker running)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/readyz", timeout=5)
        last = response.text
        if response.status_code == 200 and (not worker or response.json().get("worker")):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{url} is not ready: {last}")


def live_settings(*, database_url: str, data_dir: Path, port: int) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        host="127.0.0.1",
        port=port,  # links in mail point at the live server
        jwt_secret="browser-jwt-secret-" + "x" * 48,
        log_format="json",
        log_level="warning",
        run_worker=True,
        worker_heartbeat_seconds=1,
        allow_fake_driver=True,
        rate_limit_namespace=f"b{uuid.uuid4().hex[:10]}:",
        # Each browser context sends its own X-Forwarded-For (conftest), so per-address rate
        # limits count per test as they would per client, not for the whole run at once.
        trusted_proxies=["127.0.0.1/32"],
        password_hash_workers=2,
    )


@contextlib.contextmanager
def run_live_server(*, database_url: str, data_dir: Path) -> Iterator[LiveServer]:
    sock = free_socket()  # bound first: the settings (links in mail) need the port
    settings = live_settings(
        database_url=database_url, data_dir=data_dir, port=sock.getsockname()[1]
    )
    engine = make_engine(settings)
    session_factory = make_session_factory(engine)
    try:
        app = create_app(settings, engine=engine, session_factory=session_factory)
        with serve_in_thread(app, sock) as url:
            assert url == settings.public_url
            wait_until_ready(url, worker=True)
            yield LiveServer(
                url=url,
                app=app,
                settings=settings,
                session_factory=session_factory,
                mailbox=Mailbox(data_dir / "mail"),
            )
    finally:
        engine.dispose()
