"""A streaming read replica of the embedded cluster, under ``<data dir>/replica``.

Built once with ``pg_basebackup -R`` from the running primary (over its Unix socket, as the
server's user), then started like the primary: its own socket directory and its own port, no
TCP. It is a hot standby: it answers reads, refuses writes, and never archives WAL (the primary
does). See docs/operations.md, "Read replica".
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from vmcloud.config import Settings
from vmcloud.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from vmcloud.db.runtime import EMBEDDED_DBNAME

APPLICATION_NAME = "vmcloud_replica"


class Replica(EmbeddedPostgres):
    """The standby of ``primary``; :meth:`start` builds it first when it does not exist."""

    def __init__(self, primary: EmbeddedPostgres, *, port: int | None = None) -> None:
        super().__init__(
            primary.root.parent / "replica",
            durable=primary.durable,
            superuser=primary.superuser,
            port=port or primary.port + 1,
        )
        self.primary = primary

    def read_url(self, dbname: str = EMBEDDED_DBNAME) -> str:
        """libpq multi-host: the standby when it answers, else the primary."""
        return (
            f"postgresql+psycopg://{self.superuser}@/{dbname}"
            f"?host={self.root},{self.primary.root}&port={self.port},{self.primary.port}"
            "&target_session_attrs=prefer-standby"
        )

    def _initdb(self) -> None:
        """Instead of a new cluster, a copy of the primary that follows it."""
        if not self.primary.is_running():
            raise EmbeddedPostgresError("the primary database is not running: start it first")
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        source = (
            f"host={self.primary.root} port={self.primary.port} user={self.superuser}"
            f" application_name={APPLICATION_NAME}"
        )
        result = self._run(
            [
                str(self.bin_dir / "pg_basebackup"),
                f"--dbname={source}",
                f"--pgdata={self.data_dir}",
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
                "--no-password",
            ]
        )
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise EmbeddedPostgresError(f"pg_basebackup failed: {result.stderr.strip()}")
        # Read after postgresql.conf and after the primary's ALTER SYSTEM lines copied with it:
        # the standby's own socket and port, and no archiving of its own.
        overrides = {
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "archive_mode": "'off'",
            "hot_standby": "on",
            "hot_standby_feedback": "on",
        }
        with open(self.data_dir / "postgresql.auto.conf", "a") as conf:
            conf.write("".join(f"{key} = {value}\n" for key, value in overrides.items()))

    def detach(self) -> None:
        """Leave the standby running after this process exits (``vmcloud db replica start``):
        give up ownership without stopping it."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self.owned = False

    def destroy(self) -> None:
        """Stop the standby if this process owns it and remove its files (the next start
        builds a fresh one)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def embedded_replica(settings: Settings) -> Replica:
    """The replica of this installation's embedded database (``<data dir>/replica``)."""
    if settings.database_url:
        raise EmbeddedPostgresError(
            "DATABASE_URL is set: give that database its own standby and point"
            ' VMCLOUD_DATABASE_READ_URL at both (docs/operations.md, "Read replica").'
        )
    return Replica(EmbeddedPostgres(settings.data_dir / "postgres"))


@dataclass(frozen=True)
class ReplicaStatus:
    running: bool
    streaming: bool  # the primary sees a walsender in state "streaming"
    in_recovery: bool | None  # the standby says it is one
    lag_bytes: int | None  # WAL sent by the primary and not yet replayed
    replay_lag_seconds: Decimal | None  # the primary's measure (None when idle)
    replayed_lsn: str | None


def status(replica: Replica) -> ReplicaStatus:
    """Streaming state and lag: ``pg_stat_replication`` on the primary,
    ``pg_last_wal_replay_lsn()`` on the standby."""
    sender = _ask(
        replica.primary,
        "SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,"
        "       extract(epoch FROM replay_lag)"
        "  FROM pg_stat_replication WHERE application_name = %s"
        " ORDER BY backend_start DESC LIMIT 1",
        (APPLICATION_NAME,),
    )
    running = replica.is_running()
    standby = _ask(replica, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")
    return ReplicaStatus(
        running=running,
        streaming=sender is not None and sender[0] == "streaming",
        in_recovery=standby[0] if standby else None,
        lag_bytes=sender[1] if sender else None,
        replay_lag_seconds=sender[2] if sender else None,
        replayed_lsn=standby[1] if standby else None,
    )


def _ask(
    server: EmbeddedPostgres, query: str, params: tuple[Any, ...] = ()
) -> tuple[Any, ...] | None:
    """One row from ``server``, or None when it is down or not yet accepting connections."""
    if not server.is_running():
        return None
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            return conn.execute(query, params).fetchone()
    except psycopg.OperationalError:
        return None
