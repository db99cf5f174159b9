"""Read a database's catalog into comparable values: columns, constraints, indexes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

SEED_SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schema" / "seed.md"

_STATEMENT = re.compile(r"\bCREATE\s+(?:TABLE|INDEX)\b[^;]*;", re.IGNORECASE | re.DOTALL)


def seed_statements() -> list[str]:
    """Every ``CREATE TABLE`` and ``CREATE INDEX`` statement of the seed schema, in order."""
    text = SEED_SCHEMA.read_text()
    without_comments = re.sub(r"--[^\n]*", "", text)
    return [m.group(0) for m in _STATEMENT.finditer(without_comments)]


@dataclass
class Catalog:
    columns: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    constraints: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    indexes: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def tables(self) -> set[str]:
        return {table for table, _ in self.columns}


def read_catalog(conninfo: str) -> Catalog:
    catalog = Catalog()
    with psycopg.connect(conninfo) as conn:
        for row in conn.execute(
            """
            SELECT table_name, column_name, ordinal_position, data_type,
                   character_maximum_length, numeric_precision, numeric_scale,
                   is_nullable, column_default
              FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name <> 'alembic_version'
            """
        ):
            catalog.columns[(row[0], row[1])] = tuple(row[2:])
        for table, name, kind, definition in conn.execute(
            """
            SELECT c.conrelid::regclass::text, c.conname, c.contype::text,
                   pg_get_constraintdef(c.oid)
              FROM pg_constraint c
             WHERE c.connamespace = 'public'::regnamespace
               AND c.conrelid::regclass::text <> 'alembic_version'
            """
        ):
            catalog.constraints[(table, name)] = (kind, definition)
        for table, name, definition in conn.execute(
            """
            SELECT tablename, indexname, indexdef FROM pg_indexes
             WHERE schemaname = 'public' AND tablename <> 'alembic_version'
            """
        ):
            catalog.indexes[(table, name)] = definition
    return catalog


def differences(expected: Catalog, actual: Catalog) -> list[str]:
    """What of ``expected`` is missing or different in ``actual``.

    Objects that only ``actual`` has (columns, checks or tables added by later migrations) are
    allowed: the seed is a floor that later steps build on, never something they change.
    """
    found: list[str] = []
    for kind in ("columns", "constraints", "indexes"):
        want: dict[Any, Any] = getattr(expected, kind)
        have: dict[Any, Any] = getattr(actual, kind)
        for key, value in sorted(want.items()):
            if key not in have:
                found.append(f"{kind}: {key} missing")
            elif have[key] != value:
                found.append(f"{kind}: {key} differs: seed {value!r}, migrated {have[key]!r}")
    return found
