"""pgBackRest for the embedded cluster: its files under ``<data dir>/backup/`` and how it runs.

Every command runs as the ``postgres`` user when we are root (as the embedded server does): a
backup run as root leaves root-owned files that break the next run. ``--config`` points at our
own ``pgbackrest.conf``, so Debian's ``/etc/pgbackrest.conf`` is never read.
See docs/operations.md, "Backups", and the design notes it cites.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from collections.abc import Mapping
from pathlib import Path

STANZA = "vmcloud"
DEFAULT_RETENTION_FULL = 12
DEFAULT_RETENTION_DIFF = 30


class PgBackRestError(RuntimeError):
    pass


class PgBackRest:
    """The stanza of one embedded cluster whose socket directory is ``pg_root`` (its data in
    ``pg_root/data``); the backup files live in ``root`` (``<data dir>/backup``)."""

    def __init__(
        self,
        root: Path,
        *,
        pg_root: Path,
        port: int = 5432,
        superuser: str = "vmcloud",
        repo2: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.pg_root = pg_root.resolve()
        self.port = port
        self.superuser = superuser
        self.repo2 = dict(repo2 or {})
        self.config = self.root / "pgbackrest.conf"
        self.repo = self.root / "repo"
        self.files = self.root / "files"  # secrets/ and attachments/ archives, one per backup

    @property
    def archive_command(self) -> str:
        return f"pgbackrest --config={self.config} --stanza={STANZA} archive-push %p"

    def write_config(self) -> None:
        """Create the directories (``postgres`` 0750) and ``pgbackrest.conf`` (0640). The spool
        directory is for restores (each gets one of its own) and asynchronous archiving."""
        owner = server_user()
        for path in (
            self.root,
            self.repo,
            self.root / "log",
            self.root / "lock",
            self.root / "spool",
        ):
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o750)  # noqa: S103 - the layout pgBackRest documents
            if owner is not None:
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self.files.mkdir(exist_ok=True)
        os.chmod(self.files, 0o700)  # secrets: readable by the platform's user only
        lines = ["[global]"]
        for n, options in enumerate([{"path": str(self.repo)}, self.repo2], start=1):
            if options:
                lines += [f"repo{n}-{key}={value}" for key, value in sorted(options.items())]
                lines += [
                    f"repo{n}-retention-full={DEFAULT_RETENTION_FULL}",
                    f"repo{n}-retention-diff={DEFAULT_RETENTION_DIFF}",
                    f"repo{n}-retention-archive-type=diff",
                    f"repo{n}-retention-archive={DEFAULT_RETENTION_DIFF}",
                ]
        lines += [
            f"log-path={self.root / 'log'}",
            f"lock-path={self.root / 'lock'}",
            "log-level-console=warn",
            "log-level-file=info",
            "compress-type=zst",
            "start-fast=y",
            "",
            # WAL is pushed by a background process that works ahead of PostgreSQL's calls:
            # while one repository is out of reach, the others keep getting every segment
            # (synchronously they get at most one ahead of it). Only archive-push: archive-get
            # stays synchronous, so a restored copy needs no spool of its own.
            "[global:archive-push]",
            "archive-async=y",
            f"spool-path={self.root / 'spool'}",
            "",
            f"[{STANZA}]",
            f"pg1-path={self.pg_root / 'data'}",
            f"pg1-socket-path={self.pg_root}",
            f"pg1-port={self.port}",
            f"pg1-user={self.superuser}",
            "",
        ]
        text = "\n".join(lines)
        if not self.config.exists() or self.config.read_text() != text:
            tmp = self.config.with_suffix(".tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o640)
            if owner is not None:
                os.chown(tmp, owner.pw_uid, owner.pw_gid)
            tmp.replace(self.config)

    @property
    def repos(self) -> list[int]:
        return [1, 2] if self.repo2 else [1]

    def attempt(
        self, command: str, *options: str, background: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``pgbackrest <command>`` with our config and stanza, whatever its exit code. A
        ``background`` command (a backup, a verification) yields the CPU and the disk to the
        platform's requests (``nice``, lowest best-effort ``ionice``)."""
        argv = ["pgbackrest", f"--config={self.config}", f"--stanza={STANZA}", *options, command]
        if background:
            argv = ["nice", "-n", "10", "ionice", "-c", "2", "-n", "7", *argv]
        return run_as_server(argv)

    def run(self, command: str, *options: str, background: bool = False) -> str:
        """``pgbackrest <command>``'s standard output; :class:`PgBackRestError` if it failed."""
        result = self.attempt(command, *options, background=background)
        if result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise PgBackRestError(
                f"pgbackrest {command} failed ({result.returncode}): "
                + " ".join(detail[-5:])[:2000]
            )
        return result.stdout

    def create_stanza(self) -> list[str]:
        """Idempotent: run after each start. Repository 1 must hold the stanza
        (:class:`PgBackRestError`); when only another repository fails (an unmounted disk, an
        object store out of reach) the failure is returned, so that the platform still starts.
        (``stanza-create`` takes no ``--repo``: ``info --repo=1`` tells what repository 1 has.)"""
        try:
            self.run("stanza-create")
        except PgBackRestError as exc:
            if len(self.repos) == 1 or not self._stanza_in_repo1():
                raise
            return [f"the stanza could not be created in every repository: {exc}"]
        return []

    def _stanza_in_repo1(self) -> bool:
        try:
            stanzas = json.loads(self.run("info", "--repo=1", "--output=json") or "[]")
        except (PgBackRestError, ValueError):
            return False
        codes = [r["status"]["code"] for s in stanzas for r in s.get("repo", []) if r["key"] == 1]
        return bool(codes) and codes[0] in (0, 2)  # ok, or no backup yet


def server_user() -> pwd.struct_passwd | None:
    """The ``postgres`` user when we are root (the server and pgBackRest run as it)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PgBackRestError("running as root needs the 'postgres' system user") from exc


def run_as_server(argv: list[str]) -> subprocess.CompletedProcess[str]:
    if server_user() is not None:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    try:
        return subprocess.run(  # noqa: S603 - argv from fixed paths, never a shell string
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, cwd="/"
        )
    except FileNotFoundError as exc:
        raise PgBackRestError(
            "pgbackrest is not installed (Debian package pgbackrest; ./run installs it)"
        ) from exc
