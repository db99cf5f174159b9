"""``vmcloud billing``: ledger checks for operators."""

from __future__ import annotations

import typer

from vmcloud.billing import ledger
from vmcloud.config import get_settings
from vmcloud.db.runtime import database_url
from vmcloud.db.session import make_engine, make_session_factory

app = typer.Typer(help="Billing and the ledger.", no_args_is_help=True)


@app.command()
def verify() -> None:
    """Recompute every balance from the ledger; exit 1 if any differs."""
    settings = get_settings()
    with database_url(settings) as url:
        engine = make_engine(settings, url)
        try:
            with make_session_factory(engine)() as db:
                mismatches = ledger.verify(db=db)
        finally:
            engine.dispose()
    for m in mismatches:
        typer.echo(f"MISMATCH user {m.user_id}: balance {m.balance} but ledger {m.ledger}")
    if mismatches:
        raise typer.Exit(1)
    typer.echo("every balance equals its ledger")
