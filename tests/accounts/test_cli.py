"""``vmcloud users create-admin``."""

from __future__ import annotations

import re

import psycopg
import pytest
from typer.testing import CliRunner

from vmcloud.accounts.passwords import verify_password
from vmcloud.cli import app

runner = CliRunner()


def _conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_create_admin_prints_a_working_password_once(
    clean_env: pytest.MonkeyPatch, fresh_database_url: str
) -> None:
    clean_env.setenv("DATABASE_URL", fresh_database_url)
    result = runner.invoke(
        app, ["users", "create-admin", "--email", "Ops@Example.COM", "--username", "ops"]
    )
    assert result.exit_code == 0, result.output
    match = re.search(r"Password \(shown once\): (\S+)", result.stdout)
    assert match
    password = match.group(1)
    with psycopg.connect(_conninfo(fresh_database_url)) as conn:
        row = conn.execute(
            "SELECT email, role, status, email_verified, password_hash FROM users"
            " WHERE username = 'ops'"
        ).fetchone()
    assert row is not None
    email, role, status, verified, password_hash = row
    assert (email, role, status, verified) == ("ops@example.com", "admin", "active", True)
    assert password not in password_hash
    assert password_hash.startswith("$argon2id$")
    assert verify_password(password_hash, password)


def test_create_admin_refuses_a_duplicate(
    clean_env: pytest.MonkeyPatch, fresh_database_url: str
) -> None:
    clean_env.setenv("DATABASE_URL", fresh_database_url)
    args = ["users", "create-admin", "--email", "a@example.com", "--username", "alpha"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(
        app, ["users", "create-admin", "--email", "A@example.com", "--username", "other"]
    )
    assert again.exit_code == 1
    assert "already registered" in again.output
    with psycopg.connect(_conninfo(fresh_database_url)) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)


@pytest.mark.parametrize(
    ("email", "username", "field"),
    [("not-an-email", "valid", "email"), ("b@example.com", "x", "username")],
)
def test_create_admin_validates_input(
    clean_env: pytest.MonkeyPatch, fresh_database_url: str, email: str, username: str, field: str
) -> None:
    clean_env.setenv("DATABASE_URL", fresh_database_url)
    result = runner.invoke(app, ["users", "create-admin", "--email", email, "--username", username])
    assert result.exit_code == 1
    assert f"{field}:" in result.output
    with psycopg.connect(_conninfo(fresh_database_url)) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
