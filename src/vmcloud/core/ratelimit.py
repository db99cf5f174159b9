"""Rate limits whose counters live in PostgreSQL, so they hold across every API process.

Fixed windows: a key's counter restarts when its window (``period`` seconds, aligned to the
epoch) changes. Each hit is one ``INSERT … ON CONFLICT DO UPDATE`` committed on its own
connection, so an attempt counts even when the request that made it fails and rolls back.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import URL, DateTime, Engine, Integer, String, create_engine, delete, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from vmcloud.core.clock import utcnow
from vmcloud.core.errors import RateLimitedError
from vmcloud.db.base import Base

_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 - naive UTC, like every stored time


def address_subject(ip: str | None) -> str | None:
    """The subject for per-address limits: an IPv4 address, or the /64 an IPv6 address is in
    (one subscriber usually holds a whole /64 and could otherwise rotate through it)."""
    if ip is None:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class RateLimitCounter(Base):
    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(), index=True)
    hits: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True)
class Limit:
    name: str
    hits: int
    period: int  # seconds


_HIT = text(
    """
    INSERT INTO rate_limits (key, window_start, hits) VALUES (:key, :window_start, 1)
    ON CONFLICT (key) DO UPDATE SET
        hits = CASE WHEN rate_limits.window_start = EXCLUDED.window_start
                    THEN rate_limits.hits + 1 ELSE 1 END,
        window_start = EXCLUDED.window_start
    RETURNING hits
    """
)


class RateLimiter:
    """Uses an engine of its own: a request already holds a connection of the main pool while
    it counts, so sharing that pool would let a burst of requests wait on each other forever."""

    def __init__(self, engine: Engine, namespace: str = "") -> None:
        self.engine = engine
        self.namespace = namespace

    @classmethod
    def for_database(cls, url: URL, namespace: str = "") -> RateLimiter:
        engine = create_engine(
            url,
            pool_size=2,
            max_overflow=6,
            pool_timeout=10,
            pool_pre_ping=True,
            hide_parameters=True,
            connect_args={"options": "-c timezone=UTC", "application_name": "vmcloud-limits"},
        )
        return cls(engine, namespace)

    def hit(self, limit: Limit, subject: str | None) -> None:
        """Count one attempt by ``subject`` (an address, an account); raise 429 past the limit.

        Subjects are hashed into the key: the table never holds emails or addresses.
        """
        # An address that could not be read is still an address: all such callers share one key.
        subject = subject or "unknown"
        now = utcnow()
        elapsed = int((now - _EPOCH).total_seconds())
        window_start = _EPOCH + timedelta(seconds=elapsed - elapsed % limit.period)
        digest = hashlib.sha256(subject.lower().encode()).hexdigest()[:40]
        key = f"{self.namespace}{limit.name}:{digest}"
        with self.engine.connect() as conn:
            hits = conn.execute(_HIT, {"key": key, "window_start": window_start}).scalar_one()
            conn.commit()
        if hits > limit.hits:
            retry_after = (window_start + timedelta(seconds=limit.period) - now).total_seconds()
            raise RateLimitedError(
                retry_after=int(retry_after) + 1,
                detail="Too many attempts; try again later.",
            )

    def hit_address(self, limit: Limit, ip: str | None) -> None:
        """Count one attempt from a client address (IPv6 grouped by /64)."""
        self.hit(limit, address_subject(ip))


def purge_old_counters(*, db: Session, older_than: timedelta = timedelta(days=2)) -> int:
    """Delete counters whose window ended long ago (every limit's period is far shorter)."""
    result = db.execute(
        delete(RateLimitCounter).where(RateLimitCounter.window_start < utcnow() - older_than)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
