"""Migrations: every revision upgrades and downgrades on PostgreSQL 15, and models agree."""

from __future__ import annotations

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from vmcloud.db import migrate
from vmcloud.db.base import Base
from vmcloud.db.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow

MIGRATION_FILE = r"^\d{8}_\d{4}_[a-z0-9_]+\.py$"


def _scalar(conninfo: str, query: str) -> object:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def _public_tables(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def test_round_trip_with_seed_data(pg: EmbeddedPostgres) -> None:
    pg.drop_database("roundtrip")
    pg.create_database("roundtrip")
    url, conninfo = pg.url("roundtrip"), pg.conninfo("roundtrip")

    migrate.upgrade(url)
    assert _scalar(conninfo, "SELECT count(*) FROM products WHERE status = 'active'") >= 4  # type: ignore[operator]
    assert _scalar(conninfo, "SELECT value FROM settings WHERE key = 'billing.currency'") == "USD"
    # Rows an operator added must not stop the data migration's downgrade.
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "INSERT INTO settings (key, value, type) VALUES ('custom.flag', 'true', 'boolean')"
        )

    migrate.downgrade(url, "0001_initial")
    assert _scalar(conninfo, "SELECT count(*) FROM products") == 0
    assert _scalar(conninfo, "SELECT count(*) FROM settings") == 1

    migrate.downgrade(url, "base")
    assert _public_tables(conninfo) == {"alembic_version"}

    migrate.upgrade(url)
    assert _scalar(conninfo, "SELECT count(*) FROM products") >= 4  # type: ignore[operator]
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        assert migrate.is_at_head(engine)
    finally:
        engine.dispose()


def test_each_revision_downgrades_and_upgrades_again(pg: EmbeddedPostgres) -> None:
    pg.drop_database("stepwise")
    pg.create_database("stepwise")
    url, conninfo = pg.url("stepwise"), pg.conninfo("stepwise")
    script = ScriptDirectory.from_config(migrate.alembic_config())
    revisions = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert len(revisions) >= 2
    for revision in revisions:
        migrate.upgrade(url, revision)
        tables_here = _public_tables(conninfo)
        migrate.downgrade(url, "-1")
        migrate.upgrade(url, revision)
        assert _public_tables(conninfo) == tables_here
        assert _scalar(conninfo, "SELECT version_num FROM alembic_version") == revision


def test_models_and_migrations_agree(template_url: str) -> None:
    engine = create_engine(template_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "include_name": migrate.include_name,
                },
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_revision_files_are_timestamped() -> None:
    import re

    names = [p.name for p in migrate.MIGRATIONS_DIR.joinpath("versions").glob("*.py")]
    assert names
    assert all(re.match(MIGRATION_FILE, name) for name in names), names
