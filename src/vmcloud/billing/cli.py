"""``vmcloud billing``: ledger checks for operators."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import typer
from sqlalchemy.orm import Session, sessionmaker

from vmcloud.billing import ledger
from vmcloud.billing.run import run as run_billing
from vmcloud.config import get_settings
from vmcloud.core.clock import utcnow
from vmcloud.db.runtime import database_url
from vmcloud.db.session import make_engine, make_session_factory, unit_of_work

app = typer.Typer(help="Billing and the ledger.", no_args_is_help=True)


@contextmanager
def _sessions() -> Iterator[sessionmaker[Session]]:
    settings = get_settings()
    with database_url(settings) as url:
        engine = make_engine(settings, url)
        try:
            yield make_session_factory(engine)
        finally:
            engine.dispose()


@app.command()
def verify() -> None:
    """Recompute every balance from the ledger; exit 1 if any differs."""
    with _sessions() as factory, factory() as db:
        mismatches = ledger.verify(db=db)
    for m in mismatches:
        typer.echo(f"MISMATCH user {m.user_id}: balance {m.balance} but ledger {m.ledger}")
    if mismatches:
        raise typer.Exit(1)
    typer.echo("every balance equals its ledger")


@app.command()
def run() -> None:
    """Run the billing run now (it also runs every minute in the workers): bill finished
    hours, renew or end finished periods, end what stayed unpaid past the grace days."""
    with _sessions() as factory:
        summary = run_billing(unit_of_work=partial(unit_of_work, factory), now=utcnow())
    typer.echo(
        f"billed {summary.hourly.hours} subscription-hours ({summary.hourly.charges} charges, "
        f"{summary.hourly.amount:.2f}); renewed {summary.renewed}; unpaid "
        f"{summary.unpaid + len(summary.hourly.past_due)}; ended "
        f"{summary.ended + len(summary.hourly.ended)}; expired {summary.expired}"
    )
