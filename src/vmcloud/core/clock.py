"""Time. The seed stores ``TIMESTAMP`` without time zone; every such value is UTC.

The database session runs with ``TimeZone=UTC`` so that ``CURRENT_TIMESTAMP`` defaults written by
PostgreSQL agree with the naive UTC values written from Python.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as a naive UTC datetime ready for a ``TIMESTAMP`` column."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_utc_naive(value: datetime) -> datetime:
    """``value`` in naive UTC; ``ValueError`` when that falls outside the years 1 to 9999 (the
    first and last days with an offset that pushes them over the edge)."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError("the time is out of range in UTC") from None


def isoformat_z(value: datetime) -> str:
    """ISO 8601 with a ``Z``, as every API response shows times."""
    if value.tzinfo is None:  # naive UTC, as stored: the common case, kept cheap
        return value.isoformat() + "Z"
    return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
