"""``vmcloud billing``: ledger checks for operators."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker

from vmcloud.billing import verification
from vmcloud.billing.run import run as run_billing
from vmcloud.config import get_settings
from vmcloud.core.clock import isoformat_z, utcnow
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
def verify(
    full: Annotated[
        bool,
        typer.Option(
            "--full", help="Sum the whole ledger, not only what changed since the last check."
        ),
    ] = False,
) -> None:
    """Check every balance against the ledger (what changed since the last check, or all of it
    with --full); exit 1 if any differs."""
    with _sessions() as factory, unit_of_work(factory) as db:
        result = verification.check(db=db, full=full)
    for m in result.mismatches:
        typer.echo(f"MISMATCH user {m.user_id}: balance {m.balance} but ledger {m.ledger}")
    typer.echo(
        f"{result.kind} check: {result.users_checked} balances, {result.entries_read} ledger "
        f"entries read; summed up to {isoformat_z(result.horizon)}"
    )
    if result.mismatches:
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
