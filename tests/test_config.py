"""Configuration from the environment, and secrets generated once per data directory."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from vmcloud.config import Settings, normalise_database_url


def test_environment_prefix_and_database_url(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("VMCLOUD_PORT", "9100")
    clean_env.setenv("VMCLOUD_DATA_DIR", str(tmp_path))
    clean_env.setenv("DATABASE_URL", "postgres://u:p@db.internal:5433/vmc")
    settings = Settings()
    assert settings.port == 9100
    assert settings.data_dir == tmp_path
    assert settings.database_url == "postgresql+psycopg://u:p@db.internal:5433/vmc"


def test_no_database_url_means_embedded(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().database_url is None


def test_bad_values_are_rejected(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("VMCLOUD_PORT", "70000")
    with pytest.raises(ValueError, match="port"):
        Settings()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://a@h/d", "postgresql+psycopg://a@h/d"),
        ("postgres://a@h/d", "postgresql+psycopg://a@h/d"),
        ("postgresql+psycopg://a@h/d", "postgresql+psycopg://a@h/d"),
    ],
)
def test_url_normalisation(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


def test_secrets_are_generated_once_private_and_per_install(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = Settings(data_dir=tmp_path / "a")
    jwt_key, fernet_key = first.jwt_key, first.fernet_key
    assert len(jwt_key) >= 64
    Fernet(fernet_key.encode())  # a usable key
    assert len(base64.urlsafe_b64decode(fernet_key)) == 32
    for name in ("jwt_secret", "encryption_key"):
        mode = stat.S_IMODE((tmp_path / "a" / "secrets" / name).stat().st_mode)
        assert mode == 0o600
    again = Settings(data_dir=tmp_path / "a")
    assert (again.jwt_key, again.fernet_key) == (jwt_key, fernet_key)
    other = Settings(data_dir=tmp_path / "b")
    assert other.jwt_key != jwt_key
    assert other.fernet_key != fernet_key


def test_given_secrets_win_and_nothing_is_written(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("VMCLOUD_JWT_SECRET", "from-the-environment-" + "k" * 40)
    settings = Settings(data_dir=tmp_path)
    assert settings.jwt_key.startswith("from-the-environment-")
    assert not (tmp_path / "secrets" / "jwt_secret").exists()
