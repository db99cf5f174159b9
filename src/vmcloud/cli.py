"""The ``vmcloud`` command."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from types import FrameType
from typing import Annotated

import typer
import uvicorn

from vmcloud.accounts import service as accounts
from vmcloud.accounts.cli import app as users_app
from vmcloud.app import create_app
from vmcloud.billing.cli import app as billing_app
from vmcloud.compute import local
from vmcloud.compute.cli import app as images_app
from vmcloud.compute.cli import nodes_app, pools_app
from vmcloud.config import Settings, get_settings
from vmcloud.core import jobs
from vmcloud.core.logging import configure_logging
from vmcloud.core.mail import make_mailer
from vmcloud.core.worker import WorkerFailedError, WorkerHealth, supervise
from vmcloud.db import migrate
from vmcloud.db.cli import app as db_app
from vmcloud.db.runtime import database_url
from vmcloud.db.session import make_engine, make_session_factory, unit_of_work

app = typer.Typer(help="VMCloud: sell and run virtual machines.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(images_app, name="images")
app.add_typer(nodes_app, name="nodes")
app.add_typer(pools_app, name="pools")
app.add_typer(billing_app, name="billing")

HostOption = Annotated[str | None, typer.Option(help="Address to listen on.")]
PortOption = Annotated[int | None, typer.Option(help="Port to listen on.")]


@app.callback()
def _main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


def _settings(host: str | None, port: int | None) -> Settings:
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    return get_settings().model_copy(update=overrides)


def _serve(settings: Settings, url: str, *, run_worker: bool) -> None:
    settings = settings.model_copy(update={"database_url": url, "run_worker": run_worker})
    application = create_app(settings)
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        # h11 caps the request line and headers (httptools has none); see core/size_limits.py.
        http="h11",
        h11_max_incomplete_event_size=settings.max_request_header_bytes,
    )
    typer.echo(f"VMCloud is listening on {settings.public_url}", err=True)
    # Uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal to the
    # handler that was in place before it; ours turns that into a normal exit, so the
    # `finally` blocks above us (stopping the embedded PostgreSQL) still run.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_cleanly)
    uvicorn.Server(config).run()


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


@app.command()
def up(host: HostOption = None, port: PortOption = None) -> None:
    """Everything on one machine: database (embedded unless DATABASE_URL is set), migrations,
    seed data, first admin, then serve."""
    settings = _settings(host, port)
    with database_url(settings) as url:
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
        if created:
            user, password = created
            typer.echo("")
            typer.echo("  First admin created; this password is shown only once:")
            typer.echo(f"    login:    {user.username}  ({user.email})")
            typer.echo(f"    password: {password}")
            typer.echo("")
        if not settings.smtp_host:
            typer.echo(f"  No SMTP server configured: mail goes to {settings.data_dir / 'mail'}")
        _serve(settings, url, run_worker=True)


@app.command()
def serve(
    host: HostOption = None,
    port: PortOption = None,
    worker: Annotated[bool, typer.Option(help="Also run a job worker in this process.")] = False,
) -> None:
    """Serve the API (the database must already be migrated)."""
    settings = _settings(host, port)
    with database_url(settings) as url:
        _serve(settings, url, run_worker=worker)


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
        with contextlib.suppress(asyncio.CancelledError):
            await task


def main() -> None:
    app()
