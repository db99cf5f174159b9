"""Column types shared by several domains."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class Inet(TypeDecorator[str]):
    """PostgreSQL ``INET`` read back as a plain string (psycopg would give ``ipaddress``
    objects), so addresses compare, serialise and log the same everywhere."""

    impl = INET
    cache_ok = True

    @property
    def python_type(self) -> type[str]:
        return str  # what a read gives: also how a page's cursor carries an address

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(value)
