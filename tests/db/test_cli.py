"""``vmcloud db`` against a real database."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vmcloud.cli import app
from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres

runner = CliRunner()


def test_db_commands_walk_the_migrations(
    clean_env: pytest.MonkeyPatch, pg: EmbeddedPostgres
) -> None:
    pg.drop_database("cli_db")
    pg.create_database("cli_db")
    clean_env.setenv("DATABASE_URL", pg.url("cli_db"))
    (head,) = migrate.head_revisions()

    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    current = runner.invoke(app, ["db", "current"])
    assert current.exit_code == 0
    assert f"{head} (head)" in current.stdout

    assert runner.invoke(app, ["db", "downgrade", "0002_seed_data"]).exit_code == 0
    assert runner.invoke(app, ["db", "current"]).stdout.startswith("0002_seed_data")
    assert runner.invoke(app, ["db", "downgrade", "-1"]).exit_code == 0  # no `--` needed
    assert runner.invoke(app, ["db", "current"]).stdout.startswith("0001_initial")

    assert runner.invoke(app, ["db", "downgrade", "base"]).exit_code == 0
    assert runner.invoke(app, ["db", "current"]).stdout.strip() == ""

    history = runner.invoke(app, ["db", "history"])
    assert history.exit_code == 0
    assert "0001_initial -> 0002_seed_data" in history.stdout
    assert f"-> {head} (head)" in history.stdout
