"""``vmcloud backup``: take, list, verify, drill and restore backups of the embedded database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from vmcloud.backup import drill, restore, service
from vmcloud.config import Settings, get_settings
from vmcloud.core.clock import utcnow
from vmcloud.core.jobs import libpq_url
from vmcloud.db.embedded import EmbeddedPostgresError
from vmcloud.db.pgbackrest import PgBackRest, PgBackRestError
from vmcloud.db.runtime import database_url
from vmcloud.db.session import make_engine, make_session_factory, unit_of_work
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import BACKUP_RETENTION_DIFF, BACKUP_RETENTION_FULL

app = typer.Typer(help="Backups of the embedded database (pgBackRest).", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


@contextmanager
def _platform() -> Iterator[tuple[Settings, PgBackRest, str, Session]]:
    """The embedded database (started, archiving, unless `vmcloud up` already runs it), its
    stanza, and a session that commits at the end."""
    settings = get_settings()
    if settings.database_url:
        raise _fail(
            "DATABASE_URL is set: back that database up with pgBackRest on its own host"
            ' (docs/operations.md, "External databases").'
        )
    try:
        with database_url(settings, archive=True) as url:
            repo = service.embedded_repository(settings)
            if repo is None:
                raise _fail("pgBackRest is not configured for this data directory.")
            engine = make_engine(settings, url)
            try:
                with unit_of_work(make_session_factory(engine)) as db:
                    yield settings, repo, url, db
            finally:
                engine.dispose()
    except (EmbeddedPostgresError, PgBackRestError) as exc:
        raise _fail(str(exc)) from None


@app.command()
def now(
    full: Annotated[
        bool, typer.Option("--full", help="A full backup (else differential).")
    ] = False,
) -> None:
    """Take a backup now (differential unless --full or there is none yet)."""
    with _platform() as (settings, repo, _, db):
        retention = service.Retention(
            full=site_settings.get(db, BACKUP_RETENTION_FULL),
            diff=site_settings.get(db, BACKUP_RETENTION_DIFF),
        )
        db.rollback()  # no transaction stays open for the minutes a backup takes
        outcome = service.take(
            repo=repo, data_dir=settings.data_dir, kind="manual", full=full, retention=retention
        )
        service.record(db=db, outcome=outcome)
    if outcome.error or outcome.backup is None:
        raise _fail(f"The backup failed: {outcome.error}")
    took = (outcome.finished_at - outcome.started_at).total_seconds()
    typer.echo(f"{outcome.type} backup {outcome.backup.label} taken in {took:.1f} s")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"


@app.command("list")
def list_backups() -> None:
    """Every backup with its kind, times and size; the point-in-time window; any problem."""
    with _platform() as (settings, repo, _, db):
        found = service.inventory(repo)
        problems = service.problems(db=db, settings=settings)
    typer.echo(
        f"{'label':36} {'repo':4} {'kind':8} {'type':5} {'start (UTC)':19}  {'stop':8}"
        "  size / stored"
    )
    for b in found.backups:
        typer.echo(
            f"{b.label:36} {b.repo:<4} {b.kind:8} {b.type:5} {b.started_at:%Y-%m-%d %H:%M:%S}  "
            f"{b.stopped_at:%H:%M:%S}  {_size(b.size_bytes)} / {_size(b.stored_bytes)}"
        )
    if found.pitr_from is not None:
        typer.echo(
            f"Point-in-time restore: from {found.pitr_from:%Y-%m-%d %H:%M:%S} UTC to the last"
            f" archived WAL ({found.wal_max})"
        )
    for problem in problems:
        typer.echo(f"PROBLEM: {problem}")
    if not problems:
        typer.echo("No problems.")


@app.command()
def verify() -> None:
    """Check every backup and WAL segment in the repository (judged by the report's text)."""
    with _platform() as (_, repo, _, _):
        result = service.verify(repo)
    typer.echo(result.text.rstrip())
    if not result.ok:
        raise _fail("Verification FAILED:\n  " + "\n  ".join(result.problems))
    typer.echo("Verification passed.")


@app.command("drill")
def run_drill(
    keep: Annotated[bool, typer.Option(help="Keep the scratch copy (its path is logged).")] = False,
) -> None:
    """Restore the latest backup into a scratch cluster and check it; record the outcome."""
    with _platform() as (_, repo, url, db):
        result = drill.run(repo=repo, conninfo=libpq_url(url), keep=keep)
        drill.record(db=db, result=result)
    for step in result.steps:
        typer.echo(f"  ok  {step}")
    if not result.passed:
        raise _fail(f"The drill FAILED: {result.reason}")
    typer.echo(f"The drill passed: RTO {result.rto_seconds} s, RPO {result.rpo_seconds} s.")


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("give a time like 2026-12-01T14:30:00Z") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if moment > utcnow():
        raise typer.BadParameter("that time is in the future")
    return moment


@app.command("restore")
def restore_command(
    into: Annotated[Path, typer.Option("--into", help="Data directory to restore into.")],
    to_time: Annotated[
        str | None,
        typer.Option("--to-time", help="Point in time (ISO 8601; UTC unless a zone is given)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Restore over the live data directory.")
    ] = False,
) -> None:
    """Restore the database (to --to-time, else to the end of the archive) with secrets/ and
    attachments/ into a new data directory, or over the live one with --replace."""
    settings = get_settings()
    moment = _when(to_time)
    repo = service.embedded_repository(settings.model_copy(update={"database_url": None}))
    if repo is None:
        raise _fail("No backup repository in this data directory.")
    live = into.resolve() == settings.data_dir.resolve()
    if live != replace:
        raise _fail(
            "--replace restores over the live data directory, and only it: "
            + ("add --replace." if live else f"{into} is not the live one ({settings.data_dir}).")
        )
    try:
        if replace:
            aside = restore.replace_live(repo=repo, settings=settings, to_time=moment)
            typer.echo(f"Restored over {settings.data_dir}; the old files are in {aside}.")
            typer.echo("Start the platform again with `vmcloud up`.")
        else:
            done = restore.restore_into(repo=repo, settings=settings, into=into, to_time=moment)
            typer.echo(f"Restored into {into}: " + ", ".join(done))
            typer.echo(f"Run it with VMCLOUD_DATA_DIR={into} vmcloud up")
    except (service.BackupError, PgBackRestError, EmbeddedPostgresError) as exc:
        raise _fail(f"The restore failed: {exc}") from None


@app.command("status")
def external_status() -> None:
    """WAL archiving (pg_stat_archiver) and the latest backup (pgbackrest info, when
    VMCLOUD_PGBACKREST_CONFIG reaches the repository): for a database this installation does
    not back up itself (DATABASE_URL). Exits 1 when something is wrong or cannot be read."""
    settings = get_settings()
    with database_url(settings) as url:
        engine = make_engine(settings, url)
        try:
            with Session(engine) as db:
                state = service.external_status(db=db, config=settings.pgbackrest_config)
        except OperationalError as exc:
            raise _fail(f"The database cannot be reached: {exc.orig}") from None
        finally:
            engine.dispose()
    archived = state.last_archived_at and f"{state.last_archived_at:%Y-%m-%d %H:%M:%S %Z}"
    typer.echo(
        f"archived WAL:   {state.archived_count} (last {state.last_archived_wal or '-'}"
        f" at {archived or '-'}), {state.failed_count} failed attempts"
    )
    latest = state.latest
    if latest is not None:
        typer.echo(
            f"latest backup:  {latest.label} ({latest.type}, {latest.kind}),"
            f" finished {latest.stopped_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    else:
        typer.echo(f"latest backup:  {state.repository_error or 'none in the repository'}")
    for problem in (state.archiving_problem, state.repository_error):
        if problem:
            typer.echo(problem, err=True)
    if state.archiving_problem or state.repository_error or latest is None:
        raise typer.Exit(1)
