"""Backups of the embedded database: take one, list them, verify the repository, and say what
is wrong. pgBackRest does the work (db/pgbackrest.py); this module decides the options and
reads its answers. Commands that take minutes run outside any transaction; their outcome is
recorded afterwards (:func:`record`)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from vmcloud.backup import files
from vmcloud.backup.models import BackupDrill, BackupRun
from vmcloud.config import Settings
from vmcloud.core import events
from vmcloud.core.clock import utcnow
from vmcloud.core.logging import get_logger
from vmcloud.db.pgbackrest import PgBackRest, PgBackRestError

log = get_logger(__name__)

Kind = Literal["monthly", "daily", "manual"]
STALE_AFTER = timedelta(hours=26)
_NO_BACKUP = "no valid backups"  # pgbackrest info's status message for a repository


class BackupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Retention:
    full: int = 12
    diff: int = 30

    def options(self, repos: list[int]) -> list[str]:
        """pgBackRest's native retention, for every repository: ``full`` full backups, ``diff``
        differentials, and WAL for point-in-time recovery across the differentials kept."""
        return [
            option
            for n in repos
            for option in (
                f"--repo{n}-retention-full={self.full}",
                f"--repo{n}-retention-diff={self.diff}",
                f"--repo{n}-retention-archive-type=diff",
                f"--repo{n}-retention-archive={self.diff}",
            )
        ]


@dataclass(frozen=True)
class Backup:
    label: str
    type: str  # full or diff
    kind: str
    started_at: datetime
    stopped_at: datetime
    size_bytes: int
    stored_bytes: int
    wal_start: str
    repo: int = 1  # the repository holding it


@dataclass(frozen=True)
class Inventory:
    backups: list[Backup]  # oldest first
    wal_min: str | None
    wal_max: str | None
    repo_problems: list[str] = field(default_factory=list)  # a repository not ok, in words
    troubled: frozenset[int] = frozenset()  # the keys of those repositories

    @property
    def pitr_from(self) -> datetime | None:
        """The earliest instant restorable: the end of the oldest backup whose WAL is kept."""
        kept = [b for b in self.backups if self.wal_min and b.wal_start >= self.wal_min]
        return kept[0].stopped_at if kept else None

    def latest(self, type_: str | None = None, *, repo: int | None = None) -> Backup | None:
        chosen = [
            b
            for b in self.backups
            if (type_ is None or b.type == type_) and (repo is None or b.repo == repo)
        ]
        return chosen[-1] if chosen else None


def embedded_repository(settings: Settings) -> PgBackRest | None:
    """The pgBackRest stanza of this installation's embedded database, or None when the
    database is another one (``DATABASE_URL``): pgBackRest then runs on the database's host."""
    pg_root = (settings.data_dir / "postgres").resolve()
    repo = PgBackRest(settings.data_dir / "backup", pg_root=pg_root, repo2=settings.backup_repo2)
    if not repo.config.exists():
        return None
    if settings.database_url:
        host = make_url(settings.database_url).query.get("host")
        if host is None or Path(str(host)).resolve() != pg_root:
            return None
    return repo


def inventory(repo: PgBackRest) -> Inventory:
    stanzas: list[dict[str, Any]] = json.loads(repo.run("info", "--output=json") or "[]")
    if not stanzas:
        return Inventory([], None, None)
    stanza = stanzas[0]
    backups = [_backup(raw) for raw in stanza.get("backup", []) if not raw.get("error")]
    archives = stanza.get("archive") or []
    wal_min = min((a["min"] for a in archives if a.get("min")), default=None)
    wal_max = max((a["max"] for a in archives if a.get("max")), default=None)
    troubled = [r for r in stanza.get("repo", []) if r.get("status", {}).get("code", 0) != 0]
    repo_problems = [f"Backup repository {r['key']}: {r['status']['message']}." for r in troubled]
    keys = frozenset(int(r["key"]) for r in troubled)
    return Inventory(backups, wal_min, wal_max, repo_problems, keys)


def _backup(raw: dict[str, Any]) -> Backup:
    def when(seconds: int) -> datetime:
        return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)

    return Backup(
        label=raw["label"],
        type=raw["type"],
        kind=(raw.get("annotation") or {}).get("kind", "manual"),
        started_at=when(raw["timestamp"]["start"]),
        stopped_at=when(raw["timestamp"]["stop"]),
        size_bytes=int(raw["info"]["size"]),
        stored_bytes=int(raw["info"]["repository"]["delta"]),
        wal_start=raw["archive"]["start"],
        repo=int((raw.get("database") or {}).get("repo-key", 1)),
    )


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    type: str
    started_at: datetime
    finished_at: datetime
    backup: Backup | None
    error: str | None


def take(
    *, repo: PgBackRest, data_dir: Path, kind: Kind, full: bool, retention: Retention
) -> Outcome:
    """Back up the database to every repository (full when asked or when there is none yet,
    else differential), then expire by ``retention`` (pgBackRest does it after each backup),
    then archive the files the database does not hold (secrets, attachments) beside it. Never
    raises for a failed backup: the outcome says why, naming each repository that failed (the
    backup of repository 1 is the outcome's when it succeeded)."""
    started = utcnow()
    type_ = "full" if full else "diff"
    errors: list[str] = []
    try:
        if not full and not inventory(repo).backups:
            type_ = "full"
    except PgBackRestError as exc:
        errors.append(str(exc))
    latest: Backup | None = None
    for n in repo.repos if not errors else []:
        try:
            made = _take_one(repo=repo, n=n, type_=type_, kind=kind, retention=retention)
            files.archive(repo=repo, data_dir=data_dir, label=made.label, n=n)
            latest = latest or made
        except (PgBackRestError, BackupError, OSError) as exc:
            errors.append(f"repository {n}: {exc}")
    try:
        held = inventory(repo)
        # A repository that answers with an error lists no backups: its archives are not
        # known to be expired, so nothing is pruned until every repository answers.
        if not held.troubled:
            files.prune(repo=repo, keep={(b.repo, b.label) for b in held.backups})
    except (PgBackRestError, OSError) as exc:
        errors.append(str(exc))
    if errors:
        log.error("backup.failed", kind=kind, type=type_, error=" | ".join(errors))
        return Outcome(kind, type_, started, utcnow(), latest, " | ".join(errors))
    assert latest is not None  # every repository succeeded, and there is at least one
    log.info("backup.done", kind=kind, type=type_, label=latest.label)
    return Outcome(kind, type_, started, utcnow(), latest, None)


def _take_one(*, repo: PgBackRest, n: int, type_: str, kind: Kind, retention: Retention) -> Backup:
    """One repository's backup (pgBackRest writes only one per run: ``--repo``)."""
    repo.run(
        "backup",
        f"--repo={n}",
        f"--type={type_}",
        f"--annotation=kind={kind}",
        *retention.options(repo.repos),
        background=True,
    )
    made = inventory(repo).latest(repo=n)
    if made is None:
        raise BackupError("pgbackrest reported no backup after a successful run")
    return made


def record(*, db: Session, outcome: Outcome) -> BackupRun:
    run = BackupRun(
        kind=outcome.kind,
        type=outcome.type,
        label=outcome.backup.label if outcome.backup else None,
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
        size_bytes=outcome.backup.size_bytes if outcome.backup else None,
        stored_bytes=outcome.backup.stored_bytes if outcome.backup else None,
        outcome="ok" if outcome.error is None else "failed",
        error=outcome.error[:4000] if outcome.error else None,
    )
    db.add(run)
    db.flush()
    events.announce(db, kind="backup", user_id=None, id=run.id)
    return run


@dataclass(frozen=True)
class Verification:
    ok: bool
    text: str
    problems: list[str]


_BAD_COUNT = re.compile(r"(missing|checksum invalid|size invalid|other): [1-9]")


def verify(repo: PgBackRest) -> Verification:
    """``pgbackrest verify`` of every repository, judged by its text (its exit code is 0 even
    when it finds corruption): every stanza ``status: ok`` and no file missing or invalid."""
    texts: list[str] = []
    problems: list[str] = []
    for n in repo.repos:
        result = repo.attempt(
            "verify", f"--repo={n}", "--output=text", "--verbose", background=True
        )
        texts.append(f"repository {n}:\n{result.stdout}")
        problems += [f"repository {n}: {p}" for p in _verify_problems(result)]
    return Verification(not problems, "\n".join(texts), problems)


def _verify_problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    lines = [line.strip() for line in result.stdout.splitlines()]
    problems: list[str] = []
    context = ""
    for line in lines:
        if line.startswith(("backup:", "archiveId:")):
            context = line
        if _BAD_COUNT.search(line) or "status: invalid" in line:
            problems.append(f"{context} — {line}" if context and context != line else line)
    statuses = [line for line in lines if line.startswith("status:")]
    if result.returncode != 0:
        problems.append(f"pgbackrest verify failed: {result.stderr.strip()[-500:]}")
    if not statuses or any(line != "status: ok" for line in statuses):
        problems.append("the repository's status is not ok: " + (", ".join(statuses) or "none"))
    return problems


def archiver_problem(db: Session) -> str | None:
    """A failing WAL archive (``pg_stat_archiver``): the last attempt failed."""
    row = db.execute(
        text(
            "SELECT failed_count, last_failed_wal, last_failed_time, last_archived_time"
            "  FROM pg_stat_archiver"
        )
    ).one()
    failed, wal, failed_at, archived_at = row
    if failed and failed_at is not None and (archived_at is None or failed_at > archived_at):
        return (
            f"WAL archiving is failing: segment {wal} could not be archived"
            f" (last try {failed_at:%Y-%m-%d %H:%M} UTC)."
        )
    return None


def _age_problem(label: str | None, stopped_at: datetime, now: datetime) -> str | None:
    if now - stopped_at <= STALE_AFTER:
        return None
    hours = (now - stopped_at).total_seconds() / 3600
    return f"The latest backup ({label}) is {hours:.0f} hours old."


def _drill_problem(db: Session) -> str | None:
    drill = db.scalars(select(BackupDrill).order_by(BackupDrill.started_at.desc()).limit(1)).first()
    if drill is not None and drill.outcome == "failed":
        return f"The last restore drill ({drill.started_at:%Y-%m-%d}) failed: {drill.reason}"
    return None


def recorded_problems(*, db: Session, managed: bool, now: datetime | None = None) -> list[str]:
    """:func:`problems` from the database alone (no pgBackRest call, so cheap enough for a
    live page): the newest successful backup the platform recorded, the archiver, the last
    drill. ``managed``: this installation backs its database up (``embedded_repository``)."""
    if not managed:
        return [
            "Backups are not managed by this installation (external database): run pgBackRest"
            " on the database's host (docs/operations.md)."
        ]
    now = now or utcnow()
    found: list[str] = []
    latest = db.scalars(
        select(BackupRun)
        .where(BackupRun.outcome == "ok")
        .order_by(BackupRun.finished_at.desc())
        .limit(1)
    ).first()
    if latest is None:
        found.append("There is no backup yet.")
    elif stale := _age_problem(latest.label, latest.finished_at, now):
        found.append(stale)
    newest = db.scalars(select(BackupRun).order_by(BackupRun.finished_at.desc()).limit(1)).first()
    if newest is not None and newest.outcome == "failed":
        found.append(
            f"The latest backup run ({newest.finished_at:%Y-%m-%d %H:%M}) failed: {newest.error}"
        )
    found += [p for p in (archiver_problem(db), _drill_problem(db)) if p]
    return found


def problems(*, db: Session, settings: Settings, now: datetime | None = None) -> list[str]:
    """What the staff should hear about backups, in words: no recent backup, a failing WAL
    archive, a failed restore drill. Empty when all is well."""
    now = now or utcnow()
    repo = embedded_repository(settings)
    if repo is None:
        return [
            "Backups are not managed by this installation (external database): run pgBackRest"
            " on the database's host (docs/operations.md)."
        ]
    found: list[str] = []
    try:
        found_inventory = inventory(repo)
    except PgBackRestError as exc:
        found.append(f"The backup repository cannot be read: {exc}")
    else:
        latest = found_inventory.latest()
        if latest is None:
            found.append("There is no backup yet.")
        elif stale := _age_problem(latest.label, latest.stopped_at, now):
            found.append(stale)
        # With no backup at all, each repository's "no valid backups" would only repeat it.
        found += [p for p in found_inventory.repo_problems if latest or _NO_BACKUP not in p]
    found += [p for p in (archiver_problem(db), _drill_problem(db)) if p]
    return found


@dataclass(frozen=True)
class ExternalStatus:
    """What the platform can read of an external database's backups (``DATABASE_URL``)."""

    archived_count: int
    last_archived_wal: str | None
    last_archived_at: datetime | None
    failed_count: int
    archiving_problem: str | None
    latest: Backup | None  # the newest backup in the repository, when it could be read
    repository_error: str | None  # why the repository could not be read, else None


def external_status(*, db: Session, config: Path | None) -> ExternalStatus:
    """``pg_stat_archiver`` of the database behind ``db`` and, when ``config`` names a
    pgBackRest configuration that reaches its repository (stanza ``vmcloud``), the latest
    backup from ``pgbackrest info``. Never raises for an unreachable repository."""
    archived, wal, archived_at, failed = db.execute(
        text(
            "SELECT archived_count, last_archived_wal, last_archived_time, failed_count"
            "  FROM pg_stat_archiver"
        )
    ).one()
    latest: Backup | None = None
    error: str | None = "no pgBackRest configuration given (VMCLOUD_PGBACKREST_CONFIG)"
    if config is not None:
        repo = PgBackRest(config.parent, pg_root=config.parent)
        repo.config = config
        try:
            latest = inventory(repo).latest()
            error = None
        except (PgBackRestError, ValueError, KeyError) as exc:
            error = f"the backup repository cannot be read: {exc}"
    return ExternalStatus(
        archived_count=archived,
        last_archived_wal=wal,
        last_archived_at=archived_at,
        failed_count=failed,
        archiving_problem=archiver_problem(db),
        latest=latest,
        repository_error=error,
    )
