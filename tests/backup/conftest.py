from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def tmp_root() -> Iterator[Path]:
    """A short directory the postgres user can reach (socket paths are limited)."""
    root = Path(tempfile.mkdtemp(prefix="vmc-bk-", dir="/tmp"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)
