"""Rate limits whose counters live in PostgreSQL, so they hold across every API process.

Fixed windows: a key's counter restarts when its window (``period`` seconds, aligned to the
epoch) changes. Each hit is one ``INSERT … ON CONFLICT DO UPDATE`` in autocommit on a
connection of its own, so an attempt counts even when the request that made it fails and rolls
back.

A refused attempt writes nothing: the statement counts only while the key is under its limit
(a key already at its limit in this window inserts and locks no row, so PostgreSQL assigns no
transaction and flushes no WAL). Each process also remembers, per key, until when it is
refused, and refuses again from memory until then without asking the database. That memory
only refuses what the database would refuse too (a counter never goes down within its window),
so every process together still lets through at most the limit.
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


# No row comes back when the key is already at its limit in this window: nothing is written.
_HIT = text(
    """
    INSERT INTO rate_limits (key, window_start, hits)
    SELECT CAST(:key AS varchar), CAST(:window_start AS timestamp), 1
    WHERE NOT EXISTS (
        SELECT FROM rate_limits
        WHERE key = CAST(:key AS varchar)
          AND window_start = CAST(:window_start AS timestamp)
          AND hits >= :limit
    )
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

    # Keys remembered as refused, at most; past it the expired ones go, then all of them
    # (forgetting only costs a database round trip for the next refusal).
    MAX_REMEMBERED = 10_000

    def __init__(self, engine: Engine, namespace: str = "") -> None:
        self.engine = engine
        self.namespace = namespace
        self._refused_until: dict[str, datetime] = {}

    @classmethod
    def for_database(cls, url: URL, namespace: str = "") -> RateLimiter:
        engine = create_engine(
            url,
            pool_size=2,
            max_overflow=6,
            pool_timeout=10,
            pool_pre_ping=True,
            hide_parameters=True,
            # One statement per hit, nothing to roll back: no BEGIN and COMMIT round trips.
            isolation_level="AUTOCOMMIT",
            connect_args={"options": "-c timezone=UTC", "application_name": "vmcloud-limits"},
        )
        return cls(engine, namespace)

    def key(self, limit: Limit, subject: str | None) -> str:
        """The counter's key: subjects are hashed, so the table never holds emails or
        addresses. An address that could not be read is still an address: all such callers
        share one key."""
        digest = hashlib.sha256((subject or "unknown").lower().encode()).hexdigest()[:40]
        return f"{self.namespace}{limit.name}:{digest}"

    def hit(self, limit: Limit, subject: str | None) -> None:
        """Count one attempt by ``subject`` (an address, an account); raise 429 past the limit.
        An attempt refused writes nothing, and none is made to the database while this process
        knows the key is refused."""
        key = self.key(limit, subject)
        now = utcnow()
        self._refuse_if_remembered(key, now)
        elapsed = int((now - _EPOCH).total_seconds())
        window_start = _EPOCH + timedelta(seconds=elapsed - elapsed % limit.period)
        with self.engine.connect() as conn:
            hits = conn.execute(
                _HIT, {"key": key, "window_start": window_start, "limit": limit.hits}
            ).scalar_one_or_none()
            conn.commit()
        if hits is None or hits > limit.hits:
            until = window_start + timedelta(seconds=limit.period)
            self._remember(key, until, now)
            raise _refusal(until, now)

    def refuse_if_remembered(self, limit: Limit, subject: str | None) -> None:
        """Raise 429 when this process already knows ``subject`` is over ``limit`` in the
        current window. Memory only (no I/O), so it may run on the event loop, before a
        request costs a thread or a database connection; it counts nothing."""
        self._refuse_if_remembered(self.key(limit, subject), utcnow())

    def _refuse_if_remembered(self, key: str, now: datetime) -> None:
        until = self._refused_until.get(key)
        if until is not None:
            if now < until:
                raise _refusal(until, now)
            self._refused_until.pop(key, None)

    def _remember(self, key: str, until: datetime, now: datetime) -> None:
        if len(self._refused_until) >= self.MAX_REMEMBERED:
            for old, old_until in list(self._refused_until.items()):
                if old_until <= now:
                    self._refused_until.pop(old, None)
            if len(self._refused_until) >= self.MAX_REMEMBERED:
                self._refused_until.clear()
        self._refused_until[key] = until

    def hit_address(self, limit: Limit, ip: str | None) -> None:
        """Count one attempt from a client address (IPv6 grouped by /64)."""
        self.hit(limit, address_subject(ip))


def _refusal(until: datetime, now: datetime) -> RateLimitedError:
    return RateLimitedError(
        retry_after=int((until - now).total_seconds()) + 1,
        detail="Too many attempts; try again later.",
    )


def purge_old_counters(*, db: Session, older_than: timedelta = timedelta(days=2)) -> int:
    """Delete counters whose window ended long ago (every limit's period is far shorter)."""
    result = db.execute(
        delete(RateLimitCounter).where(RateLimitCounter.window_start < utcnow() - older_than)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
