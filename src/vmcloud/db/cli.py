"""``vmcloud db``: schema migrations, and the embedded database's read replica."""

from __future__ import annotations

from typing import Annotated

import typer
from alembic import command

from vmcloud.config import get_settings
from vmcloud.db.embedded import EmbeddedPostgresError
from vmcloud.db.migrate import alembic_config
from vmcloud.db.replica import Replica, embedded_replica, status
from vmcloud.db.runtime import database_url

app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)


@app.command()
def upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    with database_url(get_settings()) as url:
        command.upgrade(alembic_config(url), revision)


# ignore_unknown_options lets a relative target such as "-1" through as the argument.
@app.command(context_settings={"ignore_unknown_options": True})
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, '-1' or 'base'.")],
) -> None:
    """Revert migrations down to REVISION."""
    with database_url(get_settings()) as url:
        command.downgrade(alembic_config(url), revision)


@app.command()
def current() -> None:
    """Show the revision the database is at."""
    with database_url(get_settings()) as url:
        command.current(alembic_config(url), verbose=False)


@app.command()
def history() -> None:
    """List all revisions, newest first."""
    command.history(alembic_config(), indicate_current=False)


@app.command()
def revision(
    message: Annotated[str, typer.Option("--message", "-m", help="Short description.")],
    autogenerate: Annotated[bool, typer.Option(help="Diff the models against the DB.")] = True,
) -> None:
    """Create a new timestamped revision file (for developers)."""
    with database_url(get_settings()) as url:
        command.revision(alembic_config(url), message=message, autogenerate=autogenerate)


replica_app = typer.Typer(
    help="A streaming read replica of the embedded database.", no_args_is_help=True
)
app.add_typer(replica_app, name="replica")


def _replica() -> Replica:
    try:
        return embedded_replica(get_settings())
    except EmbeddedPostgresError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@replica_app.command("start")
def replica_start(
    rebuild: Annotated[
        bool, typer.Option(help="Throw the standby away and copy the primary afresh.")
    ] = False,
) -> None:
    """Build (the first time) and start the standby; it keeps running after this command."""
    replica = _replica()
    try:
        if not replica.primary.is_running():
            raise EmbeddedPostgresError(
                "the embedded database is not running: start the platform first (`vmcloud up`,"
                " or `vmcloud up --replica` to start both)"
            )
        if rebuild:
            replica.take_over()
            replica.destroy()
        replica.start()
        replica.detach()
    except EmbeddedPostgresError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Replica running in {replica.root} (port {replica.port}).")
    typer.echo(f"Read URL: VMCLOUD_DATABASE_READ_URL={replica.read_url()}")


@replica_app.command("stop")
def replica_stop() -> None:
    """Stop the standby (its files stay: the next start resumes streaming)."""
    replica = _replica()
    if not replica.is_running():
        typer.echo("The replica is not running.")
        return
    try:
        replica.take_over()
    except EmbeddedPostgresError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    replica.stop()
    typer.echo("Replica stopped.")


@replica_app.command("status")
def replica_status() -> None:
    """Whether the standby runs and streams, and how far behind the primary it is."""
    state = status(_replica())
    lag = "unknown" if state.lag_bytes is None else f"{state.lag_bytes} bytes"
    if state.replay_lag_seconds is not None:
        lag += f", {float(state.replay_lag_seconds) * 1000:.0f} ms"
    typer.echo(f"running:    {'yes' if state.running else 'no'}")
    typer.echo(f"streaming:  {'yes' if state.streaming else 'no'}")
    typer.echo(f"replayed:   {state.replayed_lsn or '-'}")
    typer.echo(f"lag:        {lag}")
    if not (state.running and state.streaming):
        raise typer.Exit(1)
