"""The restore drill: prove the latest backup restores, and how fast.

1. ``verify`` the repository (by its text: its exit code is 0 even on corruption).
2. Fingerprint every table of the source (row count and a sum of row hashes) with writes held
   off by ``SHARE`` locks, and mark that instant with a named restore point; ``check`` then
   archives the WAL holding it.
3. Restore the latest backup to that restore point in a scratch directory, on its own socket
   and port, archiving nothing; the RTO is the time from the start of the restore until the
   copy accepts writes.
4. On the copy: ``amcheck`` on every B-tree index and every table's heap, the same
   fingerprints, the migration head, and the ledger invariant (billing's full check).

The job queue's own tables (``procrastinate_*``) change under the drill (its own job among
them) and are neither locked nor compared.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from vmcloud.backup import service
from vmcloud.backup.models import BackupDrill
from vmcloud.backup.restore import restore_cluster, target_options, wait_until_writable
from vmcloud.billing import verification
from vmcloud.core import events
from vmcloud.core.clock import utcnow
from vmcloud.core.logging import get_logger
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from vmcloud.db.pgbackrest import PgBackRest, PgBackRestError

log = get_logger(__name__)
DRILL_PORT = 5433
LOCK_TIMEOUT = "200ms"  # per table: a writer waits at most this long for the drill
LOCK_ATTEMPTS = 8
SPACE_MARGIN = 64 * 2**20  # WAL replayed into the copy, its logs
LOCK_BACKOFF = 0.25  # seconds, doubled after each failed attempt (about half a minute in all)

_TABLES = """
    SELECT format('%I.%I', n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND c.relpersistence = 'p'
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%'
       AND c.relname NOT LIKE 'procrastinate%'
     ORDER BY 1
"""
_BTREE_INDEXES = """
    SELECT c.oid, format('%I.%I', n.nspname, c.relname)
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_am a ON a.oid = c.relam
     WHERE a.amname = 'btree' AND c.relpersistence = 'p' AND i.indisvalid AND i.indisready
"""
_HEAPS = """
    SELECT c.oid, format('%I.%I', n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence = 'p'
"""


class DrillFailedError(Exception):
    pass


@dataclass
class DrillResult:
    started_at: datetime
    finished_at: datetime | None = None
    backup_label: str | None = None
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    reason: str | None = None
    steps: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.reason is None


def run(
    *, repo: PgBackRest, conninfo: str, scratch_parent: Path | None = None, keep: bool = False
) -> DrillResult:
    """Drill against the source database at ``conninfo`` (libpq); never raises for a failed
    drill, the result says why. The scratch copy is removed unless ``keep``."""
    result = DrillResult(started_at=utcnow())
    scratch: Path | None = None
    copy: EmbeddedPostgres | None = None
    try:
        scratch = _scratch(repo, scratch_parent or repo.root / "drill")
        verified = service.verify(repo)
        if not verified.ok:
            raise DrillFailedError("verify: " + "; ".join(verified.problems)[:2000])
        result.steps.append("verify: status ok")
        dbname = str(psycopg.conninfo.conninfo_to_dict(conninfo).get("dbname", "vmcloud"))
        result.rpo_seconds = _archive_age(conninfo)
        point = f"vmcloud-drill-{uuid.uuid4().hex[:12]}"
        source = _fingerprint_and_mark(conninfo, point)
        repo.run("check")  # switches the WAL and waits until the segment is archived
        latest = service.inventory(repo).latest()
        result.backup_label = latest.label if latest else None
        t0 = time.monotonic()
        restore_cluster(
            repo=repo,
            pg_root=scratch / "pg",
            port=DRILL_PORT,
            archive=False,
            targets=target_options(name=point),
        )
        copy = EmbeddedPostgres(scratch / "pg", port=DRILL_PORT)
        copy.start()
        wait_until_writable(copy)
        result.rto_seconds = round(time.monotonic() - t0, 3)
        result.steps.append(
            f"restored {result.backup_label} and writable in {result.rto_seconds} s"
        )
        _amcheck(copy.conninfo(dbname))
        result.steps.append("amcheck: every B-tree index and heap clean")
        _compare(source, _fingerprints(copy.conninfo(dbname)))
        result.steps.append(f"fingerprints of {len(source)} tables match the source")
        _check_application(copy.url(dbname))
        result.steps.append("migration head and ledger verified")
    except (DrillFailedError, service.BackupError, PgBackRestError, EmbeddedPostgresError) as exc:
        result.reason = str(exc)[:4000]
    except psycopg.Error as exc:
        result.reason = f"database error: {exc}"[:4000]
    finally:
        if copy is not None:
            try:
                copy.stop()
            except EmbeddedPostgresError as exc:
                log.warning("drill.stop_failed", error=str(exc))
        if scratch is not None and not keep:
            shutil.rmtree(scratch, ignore_errors=True)
        result.finished_at = utcnow()
    log.info(
        "backup.drill",
        passed=result.passed,
        rto_seconds=result.rto_seconds,
        rpo_seconds=result.rpo_seconds,
        reason=result.reason,
    )
    return result


def record(*, db: Session, result: DrillResult) -> BackupDrill:
    drill = BackupDrill(
        started_at=result.started_at,
        finished_at=result.finished_at or utcnow(),
        backup_label=result.backup_label,
        rto_seconds=result.rto_seconds,
        rpo_seconds=result.rpo_seconds,
        outcome="passed" if result.passed else "failed",
        reason=result.reason,
    )
    db.add(drill)
    db.flush()
    events.announce(db, kind="backup", user_id=None, id=drill.id)
    return drill


def _archive_age(conninfo: str) -> float | None:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT EXTRACT(EPOCH FROM now() - last_archived_time) FROM pg_stat_archiver"
        ).fetchone()
    return round(float(row[0]), 3) if row and row[0] is not None else None


Fingerprints = dict[str, tuple[int, int]]


def _scratch(repo: PgBackRest, parent: Path) -> Path:
    """A scratch directory under ``parent`` (``<data dir>/backup/drill`` by default, on the
    installation's own disk, not /tmp), once there is room for the latest backup restored."""
    parent.mkdir(parents=True, exist_ok=True)
    parent.chmod(0o711)
    latest = service.inventory(repo).latest()
    needed = int(latest.size_bytes * 1.1) + SPACE_MARGIN if latest else 0
    free = free_bytes(parent)
    if free < needed:
        raise DrillFailedError(
            f"not enough free space in {parent} for the restored copy: {free // 2**20} MiB"
            f" free, {needed // 2**20} MiB needed (the latest backup, {latest and latest.label},"
            " restores to its database size)"
        )
    scratch = Path(tempfile.mkdtemp(prefix="vmc-drill-", dir=parent))
    scratch.chmod(0o711)
    return scratch


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _fingerprints_in(conn: psycopg.Connection[tuple[object, ...]]) -> Fingerprints:
    tables = [str(row[0]) for row in conn.execute(_TABLES).fetchall()]
    found: Fingerprints = {}
    for table in tables:
        query = sql.SQL(
            "SELECT count(*), COALESCE(sum(hashtextextended(t::text, 0)), 0) FROM {} t"
        ).format(sql.SQL(table))  # already quoted by format('%I.%I')
        row = conn.execute(query).fetchone()
        assert row is not None
        found[table] = (int(str(row[0])), int(str(row[1])))
    return found


def _fingerprints(conninfo: str) -> Fingerprints:
    with psycopg.connect(conninfo) as conn:
        return _fingerprints_in(conn)


def _fingerprint_and_mark(conninfo: str, point: str) -> Fingerprints:
    """Fingerprints of the source with its tables held still, and a restore point at that
    instant. The locks are taken with a short ``lock_timeout``: a writer holding one table and
    wanting another would otherwise deadlock with the drill; the drill lets go of them all,
    waits a little longer each time and tries again, and fails only after ``LOCK_ATTEMPTS``."""
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            return _hold_still_and_mark(conninfo, point)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
            if attempt == LOCK_ATTEMPTS:
                raise DrillFailedError(
                    f"the tables could not be held still for the fingerprints after"
                    f" {LOCK_ATTEMPTS} tries (writers kept them busy): {exc}"
                ) from exc
            log.info("backup.drill_lock_retry", attempt=attempt, error=str(exc))
            time.sleep(LOCK_BACKOFF * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _hold_still_and_mark(conninfo: str, point: str) -> Fingerprints:
    with psycopg.connect(conninfo) as conn, conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        tables = [str(row[0]) for row in conn.execute(_TABLES).fetchall()]
        if tables:
            conn.execute(
                sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                    sql.SQL(", ").join(sql.SQL(t) for t in tables)
                )
            )
        found = _fingerprints_in(conn)
        conn.execute("SELECT pg_create_restore_point(%s)", (point,))
    return found


def _amcheck(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        for oid, name in conn.execute(_BTREE_INDEXES).fetchall():
            try:
                conn.execute("SELECT bt_index_check(%s::oid::regclass, true)", (oid,))
            except psycopg.Error as exc:
                raise DrillFailedError(f"amcheck: index {name}: {exc}") from exc
        for oid, name in conn.execute(_HEAPS).fetchall():
            try:
                bad = conn.execute("SELECT * FROM verify_heapam(%s::oid::regclass)", (oid,))
                problem = bad.fetchone()
            except psycopg.Error as exc:
                raise DrillFailedError(f"amcheck: table {name}: {exc}") from exc
            if problem is not None:
                raise DrillFailedError(f"amcheck: table {name}: {problem}")


def _compare(source: Fingerprints, copy: Fingerprints) -> None:
    wrong = [
        f"{table} (rows {source[table][0]} → {copy.get(table, (None,))[0]})"
        for table in sorted(source)
        if copy.get(table) != source[table]
    ]
    if wrong:
        raise DrillFailedError("the copy differs from the source in " + ", ".join(wrong[:10]))


def _check_application(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        current = migrate.current_revisions(engine)
        heads = migrate.head_revisions()
        if current != heads:
            raise DrillFailedError(
                f"the copy's schema is at {sorted(current)}, not at the head {sorted(heads)}"
            )
        with Session(engine) as db, db.begin():
            check = verification.check(db=db, full=True)
        if check.mismatches:
            raise DrillFailedError(
                f"the ledger does not verify on the copy: {len(check.mismatches)} balances differ"
            )
    finally:
        engine.dispose()
