"""Where ticket attachments live: outside the database, behind a small interface.

``LocalStorage`` keeps files under ``<data_dir>/attachments/`` (``./var/attachments`` on
``./run``). Keys are chosen by the platform, never by the uploader, so a file name cannot
reach the file system. Another backend (an S3 bucket, say) implements the same three methods.
"""

from __future__ import annotations

import os
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from vmcloud.config import Settings

_KEY = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}$")


class Storage(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, whole or not at all."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The stored bytes; ``FileNotFoundError`` if there are none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file; removing a missing one succeeds."""


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Write to a temporary file and rename: a crash never leaves half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def storage_for(settings: Settings) -> Storage:
    return LocalStorage(settings.data_dir / "attachments")
