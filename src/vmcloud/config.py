"""Process configuration: environment variables with prefix ``VMCLOUD_`` plus ``DATABASE_URL``.

Secrets that are not given are generated once into ``<data_dir>/secrets/`` and reused, so a
single-machine install needs no configuration and nothing secret is ever hard-coded.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VMCLOUD_", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "VMCLOUD_DATABASE_URL")
    )
    # Routed reads (docs/operations.md, "Read replica"): libpq multi-host with
    # target_session_attrs=prefer-standby, so they fall back to the primary when the standby is
    # down. Unset: every read goes to database_url.
    database_read_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    base_url: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    jwt_secret: SecretStr | None = None
    encryption_key: SecretStr | None = None
    trusted_proxies: list[str] = Field(default_factory=list)
    admin_email: str = "admin@example.com"
    admin_username: str = "admin"
    db_pool_size: int = Field(default=10, ge=1)
    db_connect_timeout: int = Field(default=5, ge=1)
    # Seconds a request waits for a pooled connection before it answers 503.
    db_pool_timeout: float = Field(default=30, gt=0)

    access_token_minutes: int = Field(default=15, ge=1, le=60)
    refresh_token_days: int = Field(default=30, ge=1, le=365)

    # Mail: SMTP when a host is given, else a local mailbox under <data_dir>/mail.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_timeout: int = Field(default=20, ge=1)
    mail_from: str = "VMCloud <no-reply@localhost>"

    # API processes of `vmcloud up` / `serve` sharing the port (their --workers); unset: one
    # per core.
    api_processes: int | None = Field(default=None, ge=1, le=256)
    # Background jobs: `vmcloud worker` runs a worker; `vmcloud up` and `serve --worker` run
    # one as a supervised child process and set expect_worker for their API processes, whose
    # /readyz then reports whether a worker beats (docs/operations.md, "Processes").
    # run_worker runs one inside the API process itself (tests, benchmarks).
    run_worker: bool = False
    expect_worker: bool = False
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    # Workers beat every worker_heartbeat_seconds; a worker silent for job_stalled_after_seconds
    # is dead and its running jobs are recovered (docs/jobs.md). A worker that cannot reach the
    # database reconnects with backoff; after worker_give_up_seconds without success it fails
    # loudly (`vmcloud worker` exits 1, and its supervisor, if any, restarts it).
    worker_heartbeat_seconds: float = Field(default=10, gt=0, le=300)
    job_stalled_after_seconds: float = Field(default=60, gt=0, le=3600)
    worker_give_up_seconds: float = Field(default=300, gt=0)
    # Compute: seconds a graceful stop may take before the VM is forced off; seconds an instance
    # may sit in a transitional state before the reconciler repairs it from the node's truth.
    instance_stop_timeout: float = Field(default=60, gt=0, le=3600)
    stale_transition_seconds: int = Field(default=300, ge=1)
    # The in-memory compute driver exists for tests; a real install refuses fake:// nodes.
    allow_fake_driver: bool = False
    # Prefix for rate-limit keys; lets test suites or several installs share one database.
    rate_limit_namespace: str = ""
    # Password hashes (argon2) computed at once per process; the rest wait their turn. None:
    # half the cores, so a burst of logins leaves the other requests a core (docs/performance.md).
    password_hash_workers: int | None = Field(default=None, ge=1, le=64)
    # Request size (docs/operations.md): a body over max_request_body_bytes is 413 before it is
    # read (a ticket message with files may be as large as the attachment settings allow); the
    # request line and headers together may not pass max_request_header_bytes.
    max_request_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    max_request_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)

    # Backups of the embedded database (docs/operations.md, "Backups"): a second pgBackRest
    # repository, off the machine, as its repo2-* options without the prefix, in JSON:
    # {"path": "/mnt/backup/vmcloud"} or {"type": "s3", "s3-bucket": "…", "s3-endpoint": "…", …}.
    backup_repo2: dict[str, str] = Field(default_factory=dict)
    # An external database's backups (docs/operations.md, "External database"): a
    # pgbackrest.conf on this machine that reaches that database's repository, read for status.
    pgbackrest_config: Path | None = None

    # Payments (see docs/payments.md): Stripe's secret API key and webhook signing secret;
    # stripe_api_base points the SDK at another server (stripe-mock, a test double).
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = None

    @field_validator("database_url", "database_read_url")
    @classmethod
    def _normalise_url(cls, value: str | None) -> str | None:
        return normalise_database_url(value) if value else None

    @property
    def public_url(self) -> str:
        return self.base_url or f"http://{self.host}:{self.port}"

    @cached_property
    def jwt_key(self) -> str:
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return _read_or_create_secret(
            self.data_dir / "secrets" / "jwt_secret", lambda: secrets.token_urlsafe(64)
        )

    @cached_property
    def fernet_key(self) -> str:
        """A Fernet key (urlsafe base64 of 32 bytes) for secrets stored encrypted at rest."""
        if self.encryption_key is not None:
            return self.encryption_key.get_secret_value()
        return _read_or_create_secret(
            self.data_dir / "secrets" / "encryption_key",
            lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        )

    @cached_property
    def sandbox_webhook_key(self) -> str:
        """Signs the sandbox payment provider's events; generated once, never configured."""
        return _read_or_create_secret(
            self.data_dir / "secrets" / "sandbox_webhook_secret", lambda: secrets.token_hex(32)
        )


def normalise_database_url(url: str) -> str:
    """Accept the usual ``postgres://`` / ``postgresql://`` forms and pin the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(make() + "\n")
    try:
        # link() is atomic and refuses to replace: when two processes start at once, the first
        # one's secret wins and both read it back.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


def get_settings() -> Settings:
    return Settings()
