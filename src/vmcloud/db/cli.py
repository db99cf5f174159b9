"""``vmcloud db``: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer
from alembic import command

from vmcloud.config import get_settings
from vmcloud.db.migrate import alembic_config
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
