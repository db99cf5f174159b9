"""Alembic environment. The URL or an open connection comes from ``vmcloud.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from vmcloud.db.migrate import include_name
from vmcloud.db.models import Base

# Two processes migrating at once (two `vmcloud up` on a fleet) take turns on this lock.
_MIGRATION_LOCK_ID = 0x766D636C6F7564  # "vmcloud"

target_metadata = Base.metadata
config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("url")
    if not url:
        raise RuntimeError("vmcloud migrations need a database URL")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
