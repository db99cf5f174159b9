"""The ``vmcloud`` command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn
import uvicorn.supervisors
from fastapi import FastAPI

from vmcloud.accounts import service as accounts
from vmcloud.accounts.cli import app as users_app
from vmcloud.app import create_app
from vmcloud.backup.cli import app as backup_app
from vmcloud.billing.cli import app as billing_app
from vmcloud.compute import local
from vmcloud.compute.cli import app as images_app
from vmcloud.compute.cli import nodes_app, pools_app
from vmcloud.config import Settings, get_settings
from vmcloud.core import jobs
from vmcloud.core.logging import configure_logging
from vmcloud.core.mail import make_mailer
from vmcloud.core.processes import SUPERVISOR_PID_ENV, SupervisedChild, stop_when_orphaned
from vmcloud.core.worker import WorkerFailedError, WorkerHealth, supervise
from vmcloud.db import migrate
from vmcloud.db.cli import app as db_app
from vmcloud.db.embedded import EmbeddedPostgresError
from vmcloud.db.replica import embedded_replica
from vmcloud.db.runtime import database_url
from vmcloud.db.session import make_engine, make_session_factory, unit_of_work

app = typer.Typer(help="VMCloud: sell and run virtual machines.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(images_app, name="images")
app.add_typer(nodes_app, name="nodes")
app.add_typer(pools_app, name="pools")
app.add_typer(billing_app, name="billing")
app.add_typer(backup_app, name="backup")

HostOption = Annotated[str | None, typer.Option(help="Address to listen on.")]
PortOption = Annotated[int | None, typer.Option(help="Port to listen on.")]


@app.callback()
def _main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


def _settings(host: str | None, port: int | None) -> Settings:
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    return get_settings().model_copy(update=overrides)


STARTUP_HEALTHCHECK_SECONDS = 60


def _serve(settings: Settings, url: str, *, worker: bool, processes: int | None) -> None:
    """Serve the API in ``processes`` processes (default: one per core) sharing one listening
    socket, with a supervised ``vmcloud worker`` child when ``worker``. SIGINT/SIGTERM stop
    the API processes, then the worker; the caller stops the embedded PostgreSQL last."""
    count = processes or settings.api_processes or os.cpu_count() or 1
    settings = settings.model_copy(
        update={"database_url": url, "run_worker": False, "expect_worker": worker}
    )
    # Every child (API processes, the worker) reads its settings from the environment, as
    # this process did, plus what the command decided: the database (possibly the embedded
    # one), the address, whether a worker is expected, and who supervises them.
    os.environ.update(_child_environment(settings))
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_cleanly)
    with contextlib.ExitStack() as stack:
        if worker:
            argv = [sys.executable, "-m", "vmcloud", "worker"]
            stack.enter_context(SupervisedChild("worker", argv, stopping=stopping))
        config = uvicorn.Config(
            create_app(settings) if count == 1 else f"{__name__}:{serve_process_app.__name__}",
            factory=count > 1,
            workers=count,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            # h11 caps the request line and headers (httptools has none); see
            # core/size_limits.py and docs/performance.md, "Processes".
            http="h11",
            h11_max_incomplete_event_size=settings.max_request_header_bytes,
            # A new API process imports the whole app before it can answer the supervisor's
            # first health check; uvicorn's 5 s default killed and restarted processes that
            # were merely starting on a busy machine (or one that compiles without .pyc files).
            timeout_worker_healthcheck=STARTUP_HEALTHCHECK_SECONDS,
        )
        typer.echo(
            f"VMCloud is listening on {settings.public_url}"
            f" ({count} API process{'es' if count > 1 else ''}"
            f"{', a job worker' if worker else ''})",
            err=True,
        )
        if count == 1:
            # Uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal to
            # the handler in place before it; ours turns that into a normal exit, so the
            # `finally` blocks (the worker, the embedded PostgreSQL) still run.
            server = _Server(config, stopping)
            server.run()
            if not server.started:
                raise SystemExit("The API could not start; see the log above.")
        else:
            multiprocess = uvicorn.supervisors.Multiprocess(config, sockets=[config.bind_socket()])
            # Its handlers queue the signal for its loop (every 0.5 s); say "stopping" at once.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, _chain(signal.getsignal(signum), stopping))
            multiprocess.run()
            if not stopping.is_set():  # uvicorn gave up: an API process failed to start
                raise SystemExit("An API process could not start; see the log above.")


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, stopping: threading.Event) -> None:
        super().__init__(config)
        self._stopping = stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._stopping.set()
        super().handle_exit(sig, frame)


def _chain(handler: Any, stopping: threading.Event) -> Callable[[int, FrameType | None], None]:
    def chained(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        if callable(handler):
            handler(signum, frame)

    return chained


def _child_environment(settings: Settings) -> dict[str, str]:
    assert settings.database_url
    read = {"VMCLOUD_DATABASE_READ_URL": settings.database_read_url}
    return {
        **{key: value for key, value in read.items() if value},
        "DATABASE_URL": settings.database_url,
        "VMCLOUD_HOST": settings.host,
        "VMCLOUD_PORT": str(settings.port),
        "VMCLOUD_RUN_WORKER": "false",
        "VMCLOUD_EXPECT_WORKER": "true" if settings.expect_worker else "false",
        SUPERVISOR_PID_ENV: str(os.getpid()),
    }


def serve_process_app() -> FastAPI:
    """The application of one API process started by ``serve --workers N`` (N > 1): uvicorn
    imports and calls this in each child; the settings come from the environment the parent
    prepared. The process stops itself if its parent dies without stopping it."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    stop_when_orphaned(lambda: os.kill(os.getpid(), signal.SIGTERM))
    return create_app(settings)


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="API processes sharing the port (default: VMCLOUD_API_PROCESSES, else one per core).",
    ),
]


ReplicaOption = Annotated[
    bool,
    typer.Option(
        "--replica",
        help="Also run the embedded database's read replica and route the list pages to it.",
    ),
]


@app.command()
def up(
    host: HostOption = None,
    port: PortOption = None,
    workers: WorkersOption = None,
    replica: ReplicaOption = False,
) -> None:
    """Everything on one machine: database (embedded unless DATABASE_URL is set), migrations,
    seed data, first admin, then serve with a job worker in a supervised child process."""
    settings = _settings(host, port)
    with database_url(settings, archive=True) as url, contextlib.ExitStack() as stack:
        if replica:
            settings = _start_replica(settings, stack)
        migrate.upgrade(url)
        engine = make_engine(settings, url)
        try:
            with unit_of_work(make_session_factory(engine)) as db:
                created = accounts.ensure_first_admin(
                    db=db, email=settings.admin_email, username=settings.admin_username
                )
                compute_lines = [
                    local.ensure_tiny_image(db, settings.data_dir),
                    local.ensure_local_node(db, settings.data_dir),
                ]
        finally:
            engine.dispose()
        for line in compute_lines:
            typer.echo(f"  {line}")
        typer.echo("")
        typer.echo(f"  Web panel: {settings.public_url}/")
        typer.echo(
            f"  API:       {settings.public_url}/api/v1  (reference: {settings.public_url}/docs)"
        )
        if created:
            user, password = created
            typer.echo("  First admin created; this password is shown only once:")
            typer.echo(f"    login:    {user.username}  ({user.email})")
            typer.echo(f"    password: {password}")
        else:
            typer.echo(
                f"  Admin login: {settings.admin_username} ({settings.admin_email}), made on the"
                " first run (`vmcloud users create-admin` adds another)."
            )
        typer.echo("")
        if not settings.smtp_host:
            typer.echo(f"  No SMTP server configured: mail goes to {settings.data_dir / 'mail'}")
        _serve(settings, url, worker=True, processes=workers)


def _start_replica(settings: Settings, stack: contextlib.ExitStack) -> Settings:
    """Start the read replica (stopped when ``up`` ends) and, unless a read URL is configured,
    route reads to it (falling back to the primary)."""
    try:
        standby = embedded_replica(settings)
        stack.enter_context(standby)
    except EmbeddedPostgresError as exc:
        typer.echo(f"The read replica cannot start: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"  Read replica: {standby.root} (port {standby.port})")
    if settings.database_read_url:
        return settings
    return settings.model_copy(update={"database_read_url": standby.read_url()})


@app.command()
def serve(
    host: HostOption = None,
    port: PortOption = None,
    workers: WorkersOption = None,
    worker: Annotated[
        bool, typer.Option("--worker", help="Also run a job worker (a supervised child process).")
    ] = False,
) -> None:
    """Serve the API (the database must already be migrated)."""
    settings = _settings(host, port)
    with database_url(settings) as url:
        _serve(settings, url, worker=worker, processes=workers)


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once.")] = None,
) -> None:
    """Run a background job worker (emails, provisioning, billing runs) until stopped."""
    settings = get_settings()
    if concurrency:
        settings = settings.model_copy(update={"worker_concurrency": concurrency})
    with database_url(settings) as url:
        settings = settings.model_copy(update={"database_url": url})
        engine = make_engine(settings, url)
        jobs.configure(jobs.Runtime(settings, make_session_factory(engine), make_mailer(settings)))
        try:
            asyncio.run(_run_worker(settings, url))
        except WorkerFailedError as exc:
            typer.echo(f"The worker gave up: {exc}", err=True)
            raise typer.Exit(1) from None
        finally:
            engine.dispose()


async def _run_worker(settings: Settings, url: str) -> None:
    """Supervise a worker until SIGINT/SIGTERM, which stop it gracefully."""
    loop = asyncio.get_running_loop()
    with jobs.worker_app(url, settings.worker_concurrency) as worker_app:
        task = asyncio.create_task(
            supervise(
                worker_app,
                settings=settings,
                conninfo=jobs.libpq_url(url),
                health=WorkerHealth(),
                exit_on_failure=True,
            )
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        # Started by `up` / `serve --worker`: stop with the supervisor even if it is killed.
        stop_when_orphaned(lambda: loop.call_soon_threadsafe(task.cancel))
        with contextlib.suppress(asyncio.CancelledError):
            await task


def main() -> None:
    app()
