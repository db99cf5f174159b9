"""The files the database does not hold — ``secrets/`` (keys that decrypt stored secrets and sign
tokens) and ``attachments/`` — archived with each backup, named by its label, and kept as long
as the backup is (pgBackRest covers only the database).

Each repository's archives go where that repository is: repository 1's beside it under
``<data dir>/backup/files``; a second repository on a path (pgBackRest's ``posix`` type, the
default: a mounted disk, an NFS share; or ``cifs``) gets its own under
``<its path>/vmcloud-files``, so the files leave the machine with its backups. A second
repository in an object store keeps its archives in the local directory (pgBackRest has no
supported command to put other files there): copy that directory off the machine yourself
(docs/operations.md)."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable
from pathlib import Path

from vmcloud.db.pgbackrest import PgBackRest

DIRECTORIES = ("secrets", "attachments")
LOCAL_TYPES = ("posix", "cifs")  # pgBackRest's repository types that are a path on this machine
REPO_FOLDER = "vmcloud-files"  # inside a path repository, beside pgBackRest's archive/ and backup/


def store_for(repo: PgBackRest, n: int) -> Path:
    """Where the archives of repository ``n``'s backups are kept."""
    if n == 2 and repo.repo2.get("path") and repo.repo2.get("type", "posix") in LOCAL_TYPES:
        return Path(repo.repo2["path"]) / REPO_FOLDER
    return repo.files


def path_for(repo: PgBackRest, label: str, n: int = 1) -> Path:
    return store_for(repo, n) / f"{label}.tar.gz"


def archive(*, repo: PgBackRest, data_dir: Path, label: str, n: int = 1) -> Path:
    target = path_for(repo, label, n)
    target.parent.mkdir(mode=0o700, exist_ok=True)  # secrets: the platform's user only
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name in DIRECTORIES:
            if (data_dir / name).is_dir():
                tar.add(data_dir / name, arcname=name)
    tmp.replace(target)
    return target


def prune(*, repo: PgBackRest, keep: Iterable[tuple[int, str]]) -> None:
    """Remove the archives of backups pgBackRest has expired; ``keep``: (repository, label) of
    every backup still held. The local directory keeps the archive of any backup still held
    in any repository (before a second repository on a path had a directory of its own, its
    archives were kept there too); a repository's own directory keeps its backups'."""
    kept = [(n, f"{label}.tar.gz") for n, label in keep]
    wanted: dict[Path, set[str]] = {repo.files: {name for _, name in kept}}
    for n in repo.repos:
        if store_for(repo, n) != repo.files:
            wanted[store_for(repo, n)] = {name for m, name in kept if m == n}
    for store, names in wanted.items():
        for path in store.glob("*.tar.gz") if store.is_dir() else ():
            if path.name not in names:
                path.unlink(missing_ok=True)


def restore(*, repo: PgBackRest, label: str, into: Path) -> list[str] | None:
    """Unpack the archive taken with backup ``label`` (from whichever repository's store holds
    it) into ``into``; the directories restored, or None when no store has that archive."""
    found = [path_for(repo, label, n) for n in repo.repos]
    source = next((p for p in found if p.exists()), None)
    if source is None:
        return None
    with tarfile.open(source, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.split("/")[0] in DIRECTORIES]
        tar.extractall(into, members=members, filter="data")
    return sorted({m.name.split("/")[0] for m in members})
