"""The ledger check at ten million entries: the full check vs the incremental one after N new
entries, whose cost must follow N, not the history.

On the generated history (``bench.history``), through ``billing.verification.check`` (what
``vmcloud billing verify [--full]`` and the periodic jobs run): a full check (it also lays the
checkpoint), an incremental check with nothing new, then incremental checks after 1,000 and
10,000 new completed entries (set-based: credits of 1.00 to random customers, each balance
moved with its entries, so the ledger rule holds). The same at 10,000 entries for comparison.
The former check (``ledger.verify``, the whole ledger every time) is timed once as a reference.

Run: ``.venv/bin/python -m bench.ledger_verify [--tiny]`` (tiny: 10,000 entries, 100 and 1,000
new ones).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.orm import Session

from bench import report
from bench.history import LARGE, SMALL, cluster, history
from vmcloud.billing import ledger, verification
from vmcloud.config import Settings
from vmcloud.db.session import make_engine, make_session_factory, unit_of_work

T = TypeVar("T")

_NEW_ENTRIES = """
WITH picked AS (
    SELECT md5('u' || floor(:users * random())::int)::uuid AS user_id
      FROM generate_series(1, :n)
), entries AS (
    INSERT INTO transactions (user_id, amount, currency, type, status, payment_method,
                              payment_provider, processed_at, created_at)
    SELECT user_id, 1.00, 'USD', 'credit', 'completed', 'manual', 'manual',
           now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
      FROM picked
    RETURNING user_id
)
UPDATE users u SET balance = u.balance + e.n
  FROM (SELECT user_id, count(*) AS n FROM entries GROUP BY user_id) e
 WHERE u.id = e.user_id
"""


def _timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def _measure(url: str, users: int, batches: tuple[int, ...]) -> dict[str, tuple[float, int]]:
    """Seconds and entries read per step."""
    engine = make_engine(Settings(database_url=url))
    factory = make_session_factory(engine)

    def check(full: bool) -> verification.LedgerCheck:
        with unit_of_work(factory) as db:
            result = verification.check(db=db, full=full)
        assert result.mismatches == [], result.mismatches[:3]
        return result

    def former() -> int:
        with Session(engine) as db:
            return len(ledger.verify(db=db))

    steps: dict[str, tuple[float, int]] = {}
    try:
        mismatched, seconds = _timed(former)
        assert mismatched == 0
        steps["former"] = (seconds, -1)
        full, seconds = _timed(lambda: check(True))
        steps["full"] = (seconds, full.entries_read)
        quiet, seconds = _timed(lambda: check(False))
        steps["quiet"] = (seconds, quiet.entries_read)
        for n in batches:
            with engine.begin() as conn:
                conn.execute(text(_NEW_ENTRIES), {"users": users, "n": n})
            after, seconds = _timed(lambda: check(False))
            steps[f"after {n}"] = (seconds, after.entries_read)
    finally:
        engine.dispose()
    return steps


def run(tiny: bool = False) -> list[report.Row]:
    sizes = (1_000, SMALL) if tiny else (SMALL, LARGE)
    batches = (100, 1_000) if tiny else (1_000, 10_000)
    results = {}
    with cluster() as server:
        for size in sizes:
            made = history(server, size)
            results[size] = _measure(made.url, made.users, batches)
    small, large = (results[size] for size in sizes)
    big = f"{sizes[1]:,} entries"

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:,.0f} ms"

    rows = [
        report.Row(
            f"former check (whole ledger every time), {big}",
            "— (reference)",
            ms(large["former"][0]),
            None,
        ),
        report.Row(
            f"full check (`verify --full`, weekly), {big}",
            "— (reference)",
            f"{ms(large['full'][0])}, {large['full'][1]:,} entries read",
            None,
        ),
        report.Row(
            f"incremental check, nothing new, {big}",
            "reads no entry",
            f"{ms(large['quiet'][0])}, {large['quiet'][1]:,} entries read "
            f"(at {sizes[0]:,}: {ms(small['quiet'][0])})",
            large["quiet"][1] == 0,
        ),
    ]
    posted = 0
    for n in batches:
        posted += n
        seconds, read = large[f"after {n}"]
        rows.append(
            report.Row(
                f"incremental check after {n:,} new entries, {big}",
                "reads what changed (and what is still inside the 5-minute safety margin); "
                "a fraction of the full check",
                f"{ms(seconds)}, {read:,} entries read "
                f"(at {sizes[0]:,}: {ms(small[f'after {n}'][0])}; "
                f"full: {ms(large['full'][0])})",
                n <= read <= posted and (tiny or seconds < large["full"][0] / 10),
            )
        )
    return rows


if __name__ == "__main__":
    report.main(run)
