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


def test_nodes_and_pools_from_the_command_line(
    clean_env: pytest.MonkeyPatch, fresh_database_url: str, tmp_path: Path
) -> None:
    clean_env.setenv("DATABASE_URL", fresh_database_url)
    runner = CliRunner()
    added = runner.invoke(
        app,
        [
            "nodes", "add", "--name", "hv-01", "--uri", "qemu+ssh://root@hv-01/system",
            "--storage-dir", "/srv/vmcloud", "--vcpus", "16", "--memory-mb", "65536",
            "--disk-gb", "2000",
        ],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    again = runner.invoke(
        app,
        [
            "nodes", "add", "--name", "hv-01", "--uri", "qemu:///system", "--storage-dir", "/x",
            "--vcpus", "1", "--memory-mb", "1", "--disk-gb", "1",
        ],
    )  # fmt: skip
    assert again.exit_code == 1 and "name" in again.output
    bad = runner.invoke(
        app,
        [
            "nodes", "add", "--name", "hv-02", "--uri", "qemu:///system", "--storage-dir",
            "relative", "--vcpus", "0", "--memory-mb", "1", "--disk-gb", "1",
        ],
    )  # fmt: skip
    assert bad.exit_code == 1
    listed = runner.invoke(app, ["nodes", "list"])
    assert "hv-01" in listed.output and "vcpu 0/16" in listed.output
    assert runner.invoke(app, ["nodes", "disable", "hv-01"]).exit_code == 0
    assert "disabled" in runner.invoke(app, ["nodes", "list"]).output

    pool = runner.invoke(
        app,
        [
            "pools",
            "add",
            "--name",
            "public-1",
            "--cidr",
            "203.0.113.0/24",
            "--gateway",
            "203.0.113.1",
        ],
    )
    assert pool.exit_code == 0, pool.output
    outside = runner.invoke(
        app, ["pools", "add", "--name", "p2", "--cidr", "203.0.113.0/24", "--gateway", "10.0.0.1"]
    )
    assert outside.exit_code == 1
    with psycopg.connect(fresh_database_url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT cidr::text, host(gateway) FROM ip_pools").fetchone()
    assert row == ("203.0.113.0/24", "203.0.113.1")


def test_register_a_cloud_image(clean_env: pytest.MonkeyPatch, fresh_database_url: str) -> None:
    clean_env.setenv("DATABASE_URL", fresh_database_url)
    runner = CliRunner()
    done = runner.invoke(
        app, ["images", "register", "--slug", "debian-12", "--path", "/srv/images/debian-12.qcow2"]
    )
    assert done.exit_code == 0, done.output
    with psycopg.connect(fresh_database_url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT status, boot_json FROM images WHERE slug = 'debian-12'"
        ).fetchone()
    assert row == (
        "active",
        {
            "kind": "disk",
            "path": "/srv/images/debian-12.qcow2",
            "format": "qcow2",
            "cloud_init": True,
        },
    )
    assert (
        runner.invoke(app, ["images", "register", "--slug", "nope", "--path", "/x"]).exit_code == 1
    )
    relative = runner.invoke(
        app, ["images", "register", "--slug", "debian-12", "--path", "x.qcow2"]
    )
    assert relative.exit_code == 1


def test_set_a_nodes_own_image_path(clean_env: pytest.MonkeyPatch, fresh_database_url: str) -> None:
    clean_env.setenv("DATABASE_URL", fresh_database_url)
    runner = CliRunner()
    runner.invoke(
        app,
        [
            "nodes", "add", "--name", "hv-09", "--uri", "qemu:///system", "--storage-dir", "/srv",
            "--vcpus", "2", "--memory-mb", "2048", "--disk-gb", "20",
        ],
    )  # fmt: skip
    done = runner.invoke(
        app,
        ["nodes", "set-image", "--node", "hv-09", "--image", "debian-12", "--path", "/srv/d.qcow2"],
    )
    assert done.exit_code == 0, done.output
    assert (
        runner.invoke(
            app, ["nodes", "set-image", "--node", "hv-09", "--image", "debian-12", "--path", "rel"]
        ).exit_code
        == 1
    )
    assert (
        runner.invoke(
            app, ["nodes", "set-image", "--node", "nope", "--image", "debian-12", "--path", "/x"]
        ).exit_code
        == 1
    )
    with psycopg.connect(fresh_database_url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT image_boot_json FROM nodes WHERE name = 'hv-09'").fetchone()
    assert row == ({"debian-12": {"path": "/srv/d.qcow2"}},)
