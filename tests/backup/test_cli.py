"""``vmcloud backup now|list|verify`` against a running installation."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.backup.conftest import Platform
from vmcloud.cli import app as cli

pytestmark = pytest.mark.slow  # real clusters and backups


def test_now_list_and_verify(migrated: Platform, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("VMCLOUD_DATA_DIR", str(migrated.settings.data_dir))
    runner = CliRunner()

    empty = runner.invoke(cli, ["backup", "list"])
    assert empty.exit_code == 0, empty.output
    assert "PROBLEM: There is no backup yet." in empty.output

    full = runner.invoke(cli, ["backup", "now"])  # the first one is full without asking
    assert full.exit_code == 0, full.output
    assert "\nfull backup " in full.output
    diff = runner.invoke(cli, ["backup", "now"])
    assert diff.exit_code == 0 and "\ndiff backup " in diff.output, diff.output

    listed = runner.invoke(cli, ["backup", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count(" manual ") == 2
    assert "Point-in-time restore: from " in listed.output
    assert "No problems." in listed.output

    verified = runner.invoke(cli, ["backup", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "status: ok" in verified.output and "Verification passed." in verified.output


def test_an_external_database_is_backed_up_on_its_host(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://vmcloud@db.example.net/vmcloud")
    result = CliRunner().invoke(cli, ["backup", "now"])
    assert result.exit_code == 1
    assert "on its own host" in result.output
