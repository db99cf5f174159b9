"""Rate limits counted in PostgreSQL. The limiter commits on its own connections, so these
rows really land in the shared test database: every test uses a namespace of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from vmcloud.config import Settings
from vmcloud.core import ratelimit
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import RateLimitedError
from vmcloud.core.ratelimit import Limit, RateLimiter, address_subject, purge_old_counters
from vmcloud.db.session import make_engine

THREE_A_MINUTE = Limit("login", hits=3, period=60)
ADDRESS = "203.0.113.5"


@dataclass
class Clock:
    now: datetime

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    # Pinned to 30 s into a minute: a real clock could cross a window boundary mid-test and
    # let a hit through that should have been refused.
    pinned = Clock(utcnow().replace(second=30, microsecond=0))
    monkeypatch.setattr(ratelimit, "utcnow", lambda: pinned.now)
    return pinned


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def limiter(engine: Engine, namespace: str, clock: Clock) -> RateLimiter:
    return RateLimiter(engine, namespace=namespace)


def _hit_times(
    limiter: RateLimiter, n: int, subject: str | None, limit: Limit = THREE_A_MINUTE
) -> None:
    for _ in range(n):
        limiter.hit(limit, subject)


def _rows(engine: Engine, namespace: str) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT key, hits FROM rate_limits WHERE key LIKE :prefix ORDER BY key"),
            {"prefix": f"{namespace}%"},
        ).all()
    return [(str(key), int(hits)) for key, hits in rows]


def test_allows_up_to_the_limit_then_refuses_with_retry_after(limiter: RateLimiter) -> None:
    _hit_times(limiter, 3, ADDRESS)

    with pytest.raises(RateLimitedError) as refused:
        limiter.hit(THREE_A_MINUTE, ADDRESS)
    assert refused.value.status == 429
    retry_after = int(refused.value.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    # 30 s left in the window, rounded up so a client that waits exactly that long gets in.
    assert retry_after == 31


def test_refused_attempts_keep_being_refused_within_the_window(
    limiter: RateLimiter, clock: Clock
) -> None:
    _hit_times(limiter, 3, ADDRESS)
    for _ in range(3):
        clock.advance(9)  # still inside the same minute
        with pytest.raises(RateLimitedError):
            limiter.hit(THREE_A_MINUTE, ADDRESS)


def test_two_processes_on_separate_engines_share_one_counter(
    settings: Settings, engine: Engine, namespace: str, clock: Clock
) -> None:
    other_engine = make_engine(settings)  # as a second API process would have
    try:
        first = RateLimiter(engine, namespace=namespace)
        second = RateLimiter(other_engine, namespace=namespace)
        first.hit(THREE_A_MINUTE, ADDRESS)
        second.hit(THREE_A_MINUTE, ADDRESS)
        first.hit(THREE_A_MINUTE, ADDRESS)
        with pytest.raises(RateLimitedError):
            second.hit(THREE_A_MINUTE, ADDRESS)
        with pytest.raises(RateLimitedError):
            first.hit(THREE_A_MINUTE, ADDRESS)
    finally:
        other_engine.dispose()


def test_a_new_window_allows_again(limiter: RateLimiter, clock: Clock) -> None:
    _hit_times(limiter, 3, ADDRESS)
    with pytest.raises(RateLimitedError):
        limiter.hit(THREE_A_MINUTE, ADDRESS)

    clock.advance(30)  # into the next minute: the counter restarts
    _hit_times(limiter, 3, ADDRESS)
    with pytest.raises(RateLimitedError):
        limiter.hit(THREE_A_MINUTE, ADDRESS)


def test_subjects_are_stored_only_as_hashes(
    limiter: RateLimiter, engine: Engine, namespace: str
) -> None:
    limiter.hit(THREE_A_MINUTE, ADDRESS)
    limiter.hit(Limit("resend", hits=3, period=3600), "Alice@Example.com")

    rows = _rows(engine, namespace)
    assert len(rows) == 2
    for key, hits in rows:
        assert hits == 1
        assert ADDRESS not in key
        assert "alice" not in key.lower()
        assert "example.com" not in key.lower()
    with engine.connect() as conn:
        leaked = conn.execute(
            text(
                "SELECT count(*) FROM rate_limits"
                " WHERE key ILIKE '%alice@example.com%' OR key LIKE '%203.0.113.5%'"
            )
        ).scalar_one()
    assert leaked == 0


def test_subjects_differing_only_in_case_count_together(limiter: RateLimiter) -> None:
    limiter.hit(THREE_A_MINUTE, "Alice@Example.com")
    limiter.hit(THREE_A_MINUTE, "alice@example.com")
    limiter.hit(THREE_A_MINUTE, "ALICE@EXAMPLE.COM")
    with pytest.raises(RateLimitedError):
        limiter.hit(THREE_A_MINUTE, "alice@EXAMPLE.com")


def test_different_subjects_and_limits_are_independent(limiter: RateLimiter) -> None:
    _hit_times(limiter, 3, ADDRESS)
    with pytest.raises(RateLimitedError):
        limiter.hit(THREE_A_MINUTE, ADDRESS)

    _hit_times(limiter, 3, "203.0.113.6")  # another address
    _hit_times(limiter, 3, ADDRESS, Limit("verify", hits=3, period=60))  # another rule


def test_namespaces_keep_installs_apart(engine: Engine, clock: Clock) -> None:
    here = RateLimiter(engine, namespace=f"t{uuid.uuid4().hex[:10]}:")
    there = RateLimiter(engine, namespace=f"t{uuid.uuid4().hex[:10]}:")
    _hit_times(here, 3, ADDRESS)
    with pytest.raises(RateLimitedError):
        here.hit(THREE_A_MINUTE, ADDRESS)

    _hit_times(there, 3, ADDRESS)


@pytest.mark.parametrize("subject", [None, ""])
def test_an_unreadable_address_is_still_limited(
    limiter: RateLimiter, engine: Engine, namespace: str, subject: str | None
) -> None:
    # Callers whose address could not be read share one budget instead of having none.
    _hit_times(limiter, 3, subject)
    with pytest.raises(RateLimitedError):
        limiter.hit(THREE_A_MINUTE, None)
    assert len(_rows(engine, namespace)) == 1


@pytest.mark.parametrize(
    ("ip", "subject"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
        ("not-an-ip", None),
        (None, None),
    ],
)
def test_address_subjects_group_ipv6_by_64(ip: str | None, subject: str | None) -> None:
    assert address_subject(ip) == subject


def test_attempts_count_even_when_the_callers_transaction_rolls_back(
    limiter: RateLimiter, engine: Engine, namespace: str
) -> None:
    # A failed login rolls its request back; the attempt must still count against the caller.
    for _ in range(3):
        with Session(engine) as db:
            db.execute(text("SELECT 1"))  # the request's own transaction is open
            limiter.hit(THREE_A_MINUTE, ADDRESS)
            db.rollback()

    assert [hits for _, hits in _rows(engine, namespace)] == [3]
    with pytest.raises(RateLimitedError):
        limiter.hit(THREE_A_MINUTE, ADDRESS)


@pytest.fixture
def own_engine(settings: Settings, fresh_database_url: str) -> Iterator[Engine]:
    # purge() deletes across every namespace, so it gets a database of its own.
    engine = make_engine(settings, fresh_database_url)
    yield engine
    engine.dispose()


def test_purge_drops_old_windows_and_keeps_current_ones(own_engine: Engine, clock: Clock) -> None:
    limiter = RateLimiter(own_engine)
    limiter.hit(THREE_A_MINUTE, "old@example.com")
    clock.advance(3 * 86400)
    limiter.hit(THREE_A_MINUTE, "new@example.com")

    with Session(own_engine) as db:
        assert purge_old_counters(db=db, older_than=timedelta(days=2)) == 1
        db.commit()
    assert [hits for _, hits in _rows(own_engine, "")] == [1]
    # The survivor is the recent one: hitting it again adds to its count.
    limiter.hit(THREE_A_MINUTE, "new@example.com")
    assert [hits for _, hits in _rows(own_engine, "")] == [2]
