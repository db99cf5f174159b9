"""Alembic, driven from code: the ``vmcloud db`` commands, ``vmcloud up`` and the tests."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Revision files are named YYYYMMDD_HHMM_<slug>.py, as the seed's migration strategy asks.
FILE_TEMPLATE = "%%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(slug)s"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    # stdout is read now, not at import: Alembic's default would pin the one seen at import.
    cfg = Config(stdout=sys.stdout)
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", FILE_TEMPLATE)
    cfg.set_main_option("timezone", "UTC")
    cfg.set_main_option("truncate_slug_length", "40")
    cfg.attributes["url"] = url
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    """The revisions the database is at (empty when never migrated). Plain SQL rather than
    Alembic's MigrationContext, which logs on every call and /readyz calls this often."""
    with engine.connect() as conn:
        if conn.scalar(text("SELECT to_regclass('alembic_version')")) is None:
            return set()
        return set(conn.scalars(text("SELECT version_num FROM alembic_version")))


def is_at_head(engine: Engine, heads: set[str] | None = None) -> bool:
    return current_revisions(engine) == (heads if heads is not None else head_revisions())


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Objects Alembic's autogenerate must leave alone: the job queue's tables belong to
    procrastinate's schema, applied as a whole by its own revision."""
    return not (type_ == "table" and name is not None and name.startswith("procrastinate"))
