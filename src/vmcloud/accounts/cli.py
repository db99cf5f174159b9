"""``vmcloud users``: operator commands for accounts."""

from __future__ import annotations

from typing import Annotated

import typer

from vmcloud.accounts import service
from vmcloud.config import get_settings
from vmcloud.core.errors import ProblemError
from vmcloud.db.runtime import database_url
from vmcloud.db.session import make_engine, make_session_factory, unit_of_work

app = typer.Typer(help="User accounts.", no_args_is_help=True)


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The admin's email address.")],
    username: Annotated[str, typer.Option(help="The admin's username.")],
) -> None:
    """Create an admin account and print its generated password once."""
    settings = get_settings()
    with database_url(settings) as url:
        engine = make_engine(settings, url)
        try:
            with unit_of_work(make_session_factory(engine)) as db:
                user, password = service.create_admin(db=db, email=email, username=username)
        except ProblemError as exc:
            typer.echo(f"error: {exc.detail}", err=True)
            for err in exc.errors or []:
                typer.echo(f"  {err['field']}: {err['message']}", err=True)
            raise typer.Exit(1) from None
        finally:
            engine.dispose()
    typer.echo(f"Created admin {user.username} <{user.email}>")
    typer.echo(f"Password (shown once): {password}")
