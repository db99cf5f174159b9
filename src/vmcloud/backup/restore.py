"""Restores: the database to a point in time (pgBackRest), with the ``secrets/`` and
``attachments/`` archived with the backup it starts from.

A restored copy keeps the source's port, socket directory and ``archive_command`` in its
configuration; every copy here gets its own socket directory and port, and archives nothing
unless it replaces the live installation (then it archives on, on a new timeline).
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from vmcloud.backup import files
from vmcloud.backup.service import BackupError, inventory
from vmcloud.config import Settings
from vmcloud.core.clock import utcnow
from vmcloud.core.logging import get_logger
from vmcloud.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from vmcloud.db.pgbackrest import STANZA, PgBackRest, PgBackRestError, server_user

log = get_logger(__name__)
PROMOTE_TIMEOUT = 600.0


def target_options(*, to_time: datetime | None = None, name: str | None = None) -> list[str]:
    if to_time is not None:
        stamp = to_time.strftime("%Y-%m-%d %H:%M:%S.%f+00")
        return ["--type=time", f"--target={stamp}", "--target-action=promote"]
    if name is not None:
        return ["--type=name", f"--target={name}", "--target-action=promote"]
    return []  # to the end of the archived WAL


def restore_cluster(
    *, repo: PgBackRest, pg_root: Path, port: int, archive: bool, targets: list[str]
) -> None:
    """Restore into ``pg_root/data`` (which must not exist), to listen on ``pg_root``'s
    socket and ``port`` only."""
    owner = server_user()
    pg_root.mkdir(parents=True, exist_ok=True)
    os.chmod(pg_root, 0o700)
    if owner is not None:
        os.chown(pg_root, owner.pw_uid, owner.pw_gid)
    # Copied into the copy's restore_command (WAL is fetched synchronously: no spool needed).
    options = [f"--pg1-path={pg_root / 'data'}", *targets]
    if not archive:
        options.append("--archive-mode=off")  # never push the copy's WAL into our repository
    repo.run("restore", *options)
    with open(pg_root / "data" / "postgresql.auto.conf", "a") as conf:
        conf.write(
            "\n# vmcloud restored copy\n"
            "listen_addresses = ''\n"
            f"port = {port}\n"
            f"unix_socket_directories = '{pg_root}'\n"
        )


def wait_until_writable(server: EmbeddedPostgres, timeout: float = PROMOTE_TIMEOUT) -> None:
    """Until recovery has reached its target and the copy has been promoted."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.conninfo(), connect_timeout=5) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and not row[0]:
                return
        except psycopg.OperationalError as exc:
            if not server.is_running():
                raise BackupError(
                    f"the restored copy stopped during recovery: {_tail(server)}"
                ) from exc
        if time.monotonic() > deadline:
            raise BackupError(f"the restored copy was still recovering after {timeout:.0f} s")
        time.sleep(0.1)


def _tail(server: EmbeddedPostgres) -> str:
    if not server.log_file.exists():
        return "(no log)"
    lines = server.log_file.read_text(errors="replace").splitlines()
    wanted = [line for line in lines if "FATAL" in line or "recovery" in line]
    return " | ".join((wanted or lines)[-3:])


def label_for(repo: PgBackRest, to_time: datetime | None) -> str | None:
    """The backup a restore to ``to_time`` starts from: the newest one finished by then."""
    backups = inventory(repo).backups
    chosen = [b for b in backups if to_time is None or b.stopped_at <= to_time]
    return chosen[-1].label if chosen else None


def restore_into(
    *, repo: PgBackRest, settings: Settings, into: Path, to_time: datetime | None
) -> list[str]:
    """A new installation's data directory at ``into`` (``VMCLOUD_DATA_DIR=into vmcloud up``
    runs it): the database recovered to ``to_time`` and promoted, plus the files."""
    into = into.resolve()
    if into == settings.data_dir.resolve():
        raise BackupError("that is the live data directory: restore over it with --replace")
    if (into / "postgres").exists():
        raise BackupError(f"{into / 'postgres'} exists: choose a new directory")
    into.mkdir(parents=True, exist_ok=True)
    os.chmod(into, 0o711)  # noqa: S103 - the postgres user reaches its cluster inside
    label = label_for(repo, to_time)
    restore_cluster(
        repo=repo,
        pg_root=into / "postgres",
        port=5432,
        archive=False,
        targets=target_options(to_time=to_time),
    )
    _recover(EmbeddedPostgres(into / "postgres"))
    done = [f"database recovered to {to_time or 'the end of the archive'}"]
    restored = files.restore(repo=repo, label=label, into=into) if label else None
    if restored is None:
        log.warning("backup.files_archive_missing", label=label)
        return [*done, f"NOT secrets/ and attachments/: no archive of them for backup {label}"]
    return [*done, *restored]


def newest_archived_at(repo: PgBackRest) -> datetime | None:
    """When the newest WAL file reached repository 1 (its modification time): no instant
    after it can be recovered."""
    archive = repo.repo / "archive" / STANZA
    stamps = [p.stat().st_mtime for p in archive.glob("*/*/*") if p.is_file()]
    return datetime.fromtimestamp(max(stamps), UTC).replace(tzinfo=None) if stamps else None


def replace_live(*, repo: PgBackRest, settings: Settings, to_time: datetime | None) -> Path:
    """Restore over the live installation: its database is stopped (refused while `vmcloud
    up` runs) once its latest WAL is archived, the old cluster and files are moved aside
    (returned), the restored cluster archives on from a new timeline. When anything fails
    after the move, the failed copy goes to ``failed-restore-<time>`` and the live data is
    put back."""
    data_dir = settings.data_dir.resolve()
    # Archiving stays as the restored configuration has it (on, into our repository); the
    # next `vmcloud up` creates the stanza again as on every start.
    server = EmbeddedPostgres(data_dir / "postgres")
    label = label_for(repo, to_time)
    archived: list[datetime] = []
    try:
        server.take_over(before_stop=lambda: archived.extend(_archive_now(server, repo)))
        _refuse_unarchived(repo, to_time, archived[0] if archived else None)
        aside = data_dir / f"before-restore-{utcnow():%Y%m%dT%H%M%S}"
        aside.mkdir()
        os.chmod(aside, 0o700)
        server.data_dir.rename(aside / "postgres-data")
        for name in files.DIRECTORIES:
            if (data_dir / name).exists():
                (data_dir / name).rename(aside / name)
        try:
            restore_cluster(
                repo=repo,
                pg_root=server.root,
                port=server.port,
                archive=True,
                targets=target_options(to_time=to_time),
            )
            if label is None or files.restore(repo=repo, label=label, into=data_dir) is None:
                # No archive of this backup's files: the live ones (moved aside) are the best
                # there is; without them stored secrets could not be read.
                log.warning("backup.files_archive_missing", label=label, kept_from=str(aside))
                for name in files.DIRECTORIES:
                    if (aside / name).exists():
                        shutil.copytree(aside / name, data_dir / name, symlinks=True)
            _recover(server)
        except BaseException as exc:
            server.stop()
            failed = _put_back(data_dir=data_dir, server=server, aside=aside)
            if not isinstance(exc, Exception):
                raise
            where = f"; the failed copy is in {failed}" if failed else ""
            raise BackupError(
                f"{exc} — nothing was replaced: the live data is back in {data_dir}{where}"
            ) from exc
    finally:
        server.stop()
    log.warning("backup.replaced_live", aside=str(aside), to_time=str(to_time))
    return aside


def _archive_now(server: EmbeddedPostgres, repo: PgBackRest) -> list[datetime]:
    """Commit a transaction and archive the WAL up to it (``check`` switches the WAL and
    waits): every instant up to that commit is then reachable (a time target stops only at a
    commit). Its time, or nothing when that failed (logged: the restore goes on)."""
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            row = conn.execute("SELECT txid_current(), clock_timestamp()").fetchone()
        repo.run("check")
    except (psycopg.Error, PgBackRestError) as exc:
        log.warning("backup.archive_before_replace_failed", error=str(exc))
        return []
    assert row is not None
    return [row[1].astimezone(UTC).replace(tzinfo=None)]


def _refuse_unarchived(
    repo: PgBackRest, to_time: datetime | None, committed: datetime | None
) -> None:
    """A target after the newest archived WAL (after the commit archived just now, when there
    was one) cannot be reached: refused before anything moves."""
    newest = committed or newest_archived_at(repo)
    if to_time is not None and newest is not None and to_time > newest:
        raise BackupError(
            f"the newest archived WAL reaches {newest:%Y-%m-%d %H:%M:%S} UTC: nothing"
            f" after it can be restored (asked for {to_time:%Y-%m-%d %H:%M:%S}); choose an"
            " earlier --to-time, or leave it out to restore to the end of the archive"
        )


def _put_back(*, data_dir: Path, server: EmbeddedPostgres, aside: Path) -> Path | None:
    """Move a failed restore's files to ``failed-restore-<time>`` (returned, None when it left
    nothing) and the live ones from ``aside`` back in place."""
    failed = data_dir / f"failed-restore-{utcnow():%Y%m%dT%H%M%S}"
    # Every live one was moved aside: what is in place now came from the failed restore.
    leftovers = [
        (path, target)
        for path, target in [
            (server.data_dir, failed / "postgres-data"),
            *[(data_dir / n, failed / n) for n in files.DIRECTORIES],
        ]
        if path.exists()
    ]
    if leftovers:
        failed.mkdir(mode=0o700)
        for path, target in leftovers:
            path.rename(target)
    (aside / "postgres-data").rename(server.data_dir)
    for name in files.DIRECTORIES:
        if (aside / name).exists():
            (aside / name).rename(data_dir / name)
    aside.rmdir()
    log.warning("backup.restore_put_back", data_dir=str(data_dir), failed=str(failed))
    return failed if leftovers else None


def _recover(server: EmbeddedPostgres) -> None:
    """Start the restored cluster, let it reach its target and promote, then stop it."""
    try:
        server.start()
        wait_until_writable(server)
    except EmbeddedPostgresError as exc:
        raise BackupError(f"the restored database did not start: {exc}") from exc
    finally:
        server.stop()
