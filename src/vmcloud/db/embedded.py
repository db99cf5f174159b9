"""A private PostgreSQL 15 cluster for single-machine installs and for the test suite.

Used when ``DATABASE_URL`` is unset: the cluster lives under ``<data_dir>/postgres``, listens on
a Unix socket only (no TCP port to collide with or expose), trusts only its owner, and is stopped
by whoever started it. With ``archive`` (``vmcloud up``), WAL is archived by pgBackRest into
``<data_dir>/backup`` (see db/pgbackrest.py); the test suite's clusters do not archive unless a
test asks. PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` system user that Debian's ``postgresql-15`` package creates.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

import psycopg
from psycopg import sql

from vmcloud.core.logging import get_logger
from vmcloud.db.pgbackrest import PgBackRest

log = get_logger(__name__)

PG_MAJOR = "15"
_BIN_CANDIDATES = (Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin"),)
# sun_path holds 108 bytes; the socket file name adds ~20 to the directory.
_MAX_SOCKET_DIR = 85


class EmbeddedPostgresError(RuntimeError):
    pass


def find_bin_dir() -> Path:
    configured = os.environ.get("VMCLOUD_PG_BIN_DIR")
    candidates = [Path(configured)] if configured else list(_BIN_CANDIDATES)
    for candidate in candidates:
        if (candidate / "postgres").exists() and (candidate / "initdb").exists():
            return candidate
    raise EmbeddedPostgresError(
        f"PostgreSQL {PG_MAJOR} server binaries not found in {', '.join(map(str, candidates))}. "
        f"Install Debian's postgresql-{PG_MAJOR} (./run does this) or set DATABASE_URL."
    )


class EmbeddedPostgres:
    def __init__(
        self,
        root: Path,
        *,
        durable: bool = True,
        superuser: str = "vmcloud",
        port: int = 5432,
        archive: bool = False,
        repo2: dict[str, str] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self.durable = durable
        self.superuser = superuser
        self.port = port
        self.bin_dir = find_bin_dir()
        self.owned = False
        self.archive = archive
        self.backup = PgBackRest(
            self.root.parent / "backup",
            pg_root=self.root,
            port=port,
            superuser=superuser,
            repo2=repo2,
        )
        self._lock: IO[str] | None = None
        if len(str(self.root)) > _MAX_SOCKET_DIR:
            raise EmbeddedPostgresError(
                f"{self.root} is too long a path for a Unix socket; use a shorter data directory"
            )

    # -- connection details --------------------------------------------------------------

    def url(self, dbname: str = "vmcloud") -> str:
        return f"postgresql+psycopg://{self.superuser}@/{dbname}?host={self.root}&port={self.port}"

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.root} port={self.port} user={self.superuser} dbname={dbname}"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> EmbeddedPostgres:
        """Start the cluster, creating it first if needed; reuse one that is already running.

        The process holding ``postgres.lock`` owns the server and stops it on :meth:`stop`; any
        other process (``vmcloud db current`` beside a running ``vmcloud up``) only connects.
        """
        self._prepare_root()
        self._take_lock()
        if not self.owned:
            if not self.is_running():
                raise EmbeddedPostgresError(f"{self.root} is locked by another process")
            return self
        if self.archive:
            self.backup.write_config()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self.is_running():
            log.info("embedded_postgres.adopted", root=str(self.root))
        else:
            self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file))
            log.info("embedded_postgres.started", root=str(self.root))
        if self.archive:
            self._ensure_archiving()
            for failure in self.backup.create_stanza():
                # `vmcloud backup list` and the staff overview show it from `info` too.
                log.warning("embedded_postgres.backup_repository_unreachable", error=failure)
        return self

    def archive_settings(self) -> dict[str, str]:
        return {
            "wal_level": "replica",
            "max_wal_senders": "10",
            "archive_mode": "on",
            "archive_timeout": "60",  # bounds the data lost with the machine on a quiet system
            "archive_command": self.backup.archive_command,
        }

    def _ensure_archiving(self) -> None:
        """Switch archiving on in a cluster made without it (or restored with it off, or moved
        to another data directory): ``ALTER SYSTEM``, then the restart ``archive_mode`` needs."""
        wanted = self.archive_settings()
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(wanted),)
            ).fetchall()
            current: dict[str, str] = dict(rows)
            changed = {name for name, value in wanted.items() if current.get(name) != value}
            for name in sorted(changed):
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(name), sql.Literal(wanted[name])
                    )
                )
            if changed:
                conn.execute("SELECT pg_reload_conf()")
        if changed & {"wal_level", "max_wal_senders", "archive_mode"}:
            log.info("embedded_postgres.restart_for_archiving", root=str(self.root))
            self._pg_ctl("restart", "-w", "-t", "60", "-m", "fast", "-l", str(self.log_file))

    def take_over(self, before_stop: Callable[[], object] | None = None) -> None:
        """Own the cluster and stop it, for work on its files (a restore over it); raises when
        another process (a running ``vmcloud up``) owns it. :meth:`start` starts it again.
        ``before_stop`` runs on the running cluster first (started for it when stopped)."""
        self._prepare_root()
        self._take_lock()
        if not self.owned:
            self.stop()
            raise EmbeddedPostgresError(
                f"{self.root} is in use by another process (is `vmcloud up` running?): stop it"
                " first"
            )
        if before_stop is not None and not self.is_running():
            try:  # briefly, for ``before_stop``; a cluster that cannot start is left as it is
                self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file))
            except EmbeddedPostgresError as exc:
                log.warning("embedded_postgres.take_over_start_failed", error=str(exc))
        if self.is_running():
            if before_stop is not None:
                before_stop()
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")

    def _take_lock(self) -> None:
        if self._lock is not None:
            return
        self._lock = open(self.root.parent / f"{self.root.name}.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.owned = True
        except BlockingIOError:
            self.owned = False

    def stop(self) -> None:
        if self.owned and self.is_running():
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
            log.info("embedded_postgres.stopped", root=str(self.root))
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self.owned = False

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = self._run([str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)])
        return result.returncode == 0

    def create_database(self, name: str, *, template: str | None = None) -> None:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists:
                return
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(statement)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------------

    def _server_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError as exc:
            raise EmbeddedPostgresError(
                "running as root needs the 'postgres' system user (from Debian's "
                f"postgresql-{PG_MAJOR} package) to own the embedded server"
            ) from exc

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        owner = self._server_user()
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            probe = self._run(["test", "-w", str(self.root), "-a", "-x", str(self.root)])
            if probe.returncode != 0:
                raise EmbeddedPostgresError(
                    f"the postgres user cannot reach {self.root}: a parent directory is not "
                    "searchable by other users. Set VMCLOUD_DATA_DIR to a directory it can reach "
                    "(for example under /var/lib) or set DATABASE_URL."
                )

    def _initdb(self) -> None:
        log.info("embedded_postgres.initdb", root=str(self.root))
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        result = self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                f"--username={self.superuser}",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip()}")
        settings = {
            "listen_addresses": "''",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "unix_socket_permissions": "0700",
            "max_connections": "200",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            # A statement kept waiting for a lock over deadlock_timeout (1 s) is logged with
            # who holds it: a stall then names its cause in server.log.
            "log_lock_waits": "on",
        }
        if self.archive:
            settings |= {k: f"'{v}'" for k, v in self.archive_settings().items()}
        if not self.durable:
            # Throwaway clusters for tests: crash safety buys nothing there.
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# vmcloud embedded cluster\n" + lines)

    def _pg_ctl(self, *args: str) -> None:
        result = self._run([str(self.bin_dir / "pg_ctl"), *args, "-D", str(self.data_dir)])
        if result.returncode != 0:
            tail = ""
            if self.log_file.exists():
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise EmbeddedPostgresError(
                f"pg_ctl {args[0]} failed: {result.stderr.strip()}\n{tail}".strip()
            )

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if self._server_user() is not None:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(  # noqa: S603 - argv built from fixed paths, never a shell string
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
