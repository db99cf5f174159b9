"""The files the database does not hold — ``secrets/`` (keys that decrypt stored secrets and sign
tokens) and ``attachments/`` — archived beside each backup, named by its label, and kept as
long as the backup is (pgBackRest covers only the database)."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable
from pathlib import Path

from vmcloud.db.pgbackrest import PgBackRest

DIRECTORIES = ("secrets", "attachments")


def path_for(repo: PgBackRest, label: str) -> Path:
    return repo.files / f"{label}.tar.gz"


def archive(*, repo: PgBackRest, data_dir: Path, label: str) -> Path:
    target = path_for(repo, label)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name in DIRECTORIES:
            if (data_dir / name).is_dir():
                tar.add(data_dir / name, arcname=name)
    tmp.replace(target)
    return target


def prune(*, repo: PgBackRest, keep: Iterable[str]) -> None:
    """Remove the archives of backups pgBackRest has expired."""
    wanted = {path_for(repo, label).name for label in keep}
    for path in repo.files.glob("*.tar.gz"):
        if path.name not in wanted:
            path.unlink(missing_ok=True)


def restore(*, repo: PgBackRest, label: str, into: Path) -> list[str]:
    """Unpack the archive taken with backup ``label`` into ``into``; the directories restored."""
    source = path_for(repo, label)
    if not source.exists():
        return []
    with tarfile.open(source, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.split("/")[0] in DIRECTORIES]
        tar.extractall(into, members=members, filter="data")
    return sorted({m.name.split("/")[0] for m in members})
