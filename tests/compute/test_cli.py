"""``vmcloud images build-tiny`` builds the guest and registers its boot files."""

from __future__ import annotations

import gzip
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from vmcloud.cli import app
from vmcloud.compute.tiny_image import BOOT_MARKER


def test_build_tiny_registers_the_image(
    clean_env: pytest.MonkeyPatch, fresh_database_url: str, tmp_path: Path
) -> None:
    clean_env.setenv("DATABASE_URL", fresh_database_url)
    clean_env.setenv("VMCLOUD_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["images", "build-tiny"])
    assert result.exit_code == 0, result.output
    with psycopg.connect(fresh_database_url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT status, boot_json FROM images WHERE slug = 'tiny-linux'"
        ).fetchone()
    assert row is not None
    status, boot = row
    assert status == "active" and boot["kind"] == "kernel"
    kernel, initrd = Path(boot["kernel"]), Path(boot["initrd"])
    assert kernel.stat().st_size > 1_000_000  # a real kernel
    archive = gzip.decompress(initrd.read_bytes())
    assert b"070701" in archive[:6]  # a newc cpio archive
    assert BOOT_MARKER.encode() in archive  # the init script that prints the marker
    assert b"virtio_net.ko" in archive
