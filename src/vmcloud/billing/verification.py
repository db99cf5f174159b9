"""The ledger check: ``balance = Σ completed entries`` for every user, without rereading history.

A **full** check sums every completed entry of every user (at ten million entries, tens of
seconds). It also leaves a checkpoint: a *horizon* in time, and per user the sum of their
completed entries processed at or before it (``ledger_checkpoint_sums``).

An **incremental** check reads only the entries processed after the last horizon (a partial
index on ``processed_at`` of completed entries), and compares *every* balance with its
checkpoint sum plus those entries, in one statement and so in one snapshot. A balance changed
behind the ledger's back is caught whether or not its user has new entries; a changed *old*
entry is not (its sum is in the checkpoint): that is the full check's job, weekly and on demand.
The entries between the old and the new horizon are then added to the checkpoint.

**Entries committed late.** An entry is stamped (``processed_at``) before its transaction
commits; an entry of a transaction still open when a horizon is drawn must not fall behind that
horizon, or it would never be summed. So the horizon is drawn *before* the check's snapshot, at
the start of the oldest transaction still open on the database (clock of now if none) minus
:data:`SAFETY_MARGIN`, which covers an entry stamped before its transaction began (a billing
run stamps a batch with the run's start) and clocks of API hosts that differ by seconds; it
never moves back. If an entry slips behind anyway, its user's balance no longer matches their
checkpoint: every user the incremental check finds out of line is checked again against their
whole ledger, which also rebuilds their checkpoint sum, so a late entry costs one user's
history and never raises a false alarm, and an alarm is only raised for a real difference.

Reading other sessions' transaction starts (``pg_stat_activity``) needs the role that writes
the ledger (or ``pg_read_all_stats``); ``vmcloud`` uses one role for everything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from vmcloud.billing.ledger import SIGNED_AMOUNT, Mismatch
from vmcloud.billing.models import LedgerCheckpoint, LedgerCheckpointSum
from vmcloud.core.clock import utcnow

SAFETY_MARGIN = timedelta(minutes=5)
_LOCK = 0x1ED6E2  # one check at a time: each moves the checkpoint on

_HORIZON = text(
    """
    SELECT LEAST(clock_timestamp(), MIN(xact_start)) AT TIME ZONE 'UTC'
      FROM pg_stat_activity
     WHERE pid <> pg_backend_pid() AND xact_start IS NOT NULL
       AND backend_type = 'client backend' AND datname = current_database()
    """
)

_FULL = text(
    f"""
    WITH sums AS (
        SELECT t.user_id,
               SUM({SIGNED_AMOUNT}) AS ledger,
               SUM({SIGNED_AMOUNT})
                   FILTER (WHERE COALESCE(t.processed_at, '-infinity') <= :horizon) AS settled,
               COUNT(*) AS entries
          FROM transactions t
         WHERE t.status = 'completed'
         GROUP BY t.user_id
    ), saved AS (
        INSERT INTO ledger_checkpoint_sums (user_id, settled)
        SELECT user_id, settled FROM sums WHERE settled IS NOT NULL
    ), checked AS (
        SELECT u.id, COALESCE(u.balance, 0) AS balance, COALESCE(s.ledger, 0) AS ledger
          FROM users u LEFT JOIN sums s ON s.user_id = u.id
    )
    SELECT (SELECT COUNT(*) FROM checked) AS users,
           (SELECT COALESCE(SUM(entries), 0) FROM sums) AS entries,
           (SELECT array_agg(id ORDER BY id) FROM checked WHERE balance <> ledger) AS ids,
           (SELECT array_agg(balance ORDER BY id) FROM checked WHERE balance <> ledger)
               AS balances,
           (SELECT array_agg(ledger ORDER BY id) FROM checked WHERE balance <> ledger) AS ledgers
    """
)

_INCREMENTAL = text(
    f"""
    WITH delta AS (
        SELECT t.user_id,
               SUM({SIGNED_AMOUNT}) AS tail,
               SUM({SIGNED_AMOUNT}) FILTER (WHERE t.processed_at <= :horizon) AS settled,
               COUNT(*) AS entries
          FROM transactions t
         WHERE t.status = 'completed' AND t.processed_at > :since
         GROUP BY t.user_id
    ), settle AS (
        INSERT INTO ledger_checkpoint_sums AS c (user_id, settled)
        SELECT user_id, settled FROM delta WHERE settled IS NOT NULL
        ON CONFLICT (user_id) DO UPDATE SET settled = c.settled + EXCLUDED.settled
    ), checked AS (
        SELECT u.id, COALESCE(u.balance, 0) AS balance,
               COALESCE(c.settled, 0) + COALESCE(d.tail, 0) AS ledger
          FROM users u
          LEFT JOIN ledger_checkpoint_sums c ON c.user_id = u.id
          LEFT JOIN delta d ON d.user_id = u.id
    )
    SELECT (SELECT COUNT(*) FROM checked) AS users,
           (SELECT COALESCE(SUM(entries), 0) FROM delta) AS entries,
           (SELECT array_agg(id ORDER BY id) FROM checked WHERE balance <> ledger) AS suspects
    """
)

# The users an incremental check found out of line, against their whole ledger; their
# checkpoint sums are rebuilt.
_RECHECK = text(
    f"""
    WITH sums AS (
        SELECT u.id, COALESCE(u.balance, 0) AS balance,
               COALESCE(SUM({SIGNED_AMOUNT}), 0) AS ledger,
               COALESCE(SUM({SIGNED_AMOUNT}) FILTER (
                   WHERE COALESCE(t.processed_at, '-infinity') <= :horizon), 0) AS settled,
               COUNT(t.id) AS entries
          FROM users u
          LEFT JOIN transactions t ON t.user_id = u.id AND t.status = 'completed'
         WHERE u.id = ANY(:ids)
         GROUP BY u.id, u.balance
    ), saved AS (
        INSERT INTO ledger_checkpoint_sums AS c (user_id, settled)
        SELECT id, settled FROM sums
        ON CONFLICT (user_id) DO UPDATE SET settled = EXCLUDED.settled
    )
    SELECT id, balance, ledger, entries FROM sums ORDER BY id
    """
)


@dataclass(frozen=True)
class LedgerCheck:
    kind: Literal["full", "incremental"]
    mismatches: list[Mismatch]
    users_checked: int  # balances compared
    entries_read: int  # ledger entries summed: what the check cost
    horizon: datetime  # entries processed up to here are in the checkpoint now


def check(*, db: Session, full: bool = False, margin: timedelta = SAFETY_MARGIN) -> LedgerCheck:
    """Check every balance against the ledger and move the checkpoint on. Incremental unless
    ``full`` or there is no checkpoint yet. The caller commits (the checkpoint with it)."""
    db.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK})
    state = db.get(LedgerCheckpoint, 1, populate_existing=True)
    drawn = db.execute(_HORIZON).scalar_one() - margin
    now = utcnow()
    if full or state is None:
        horizon = max(drawn, state.horizon) if state else drawn
        db.execute(delete(LedgerCheckpointSum))
        row = db.execute(_FULL, {"horizon": horizon}).one()
        kind: Literal["full", "incremental"] = "full"
        mismatches = [
            Mismatch(user_id, Decimal(balance), Decimal(ledger))
            for user_id, balance, ledger in zip(
                row.ids or [], row.balances or [], row.ledgers or [], strict=True
            )
        ]
        reread = 0
    else:
        horizon = max(drawn, state.horizon)
        row = db.execute(_INCREMENTAL, {"since": state.horizon, "horizon": horizon}).one()
        kind = "incremental"
        suspects = list(row.suspects or [])
        mismatches, reread = _recheck(db, suspects, horizon) if suspects else ([], 0)
    moved: dict[str, datetime] = {"horizon": horizon, "checked_at": now}
    if kind == "full":
        moved["full_at"] = now
    db.execute(
        insert(LedgerCheckpoint)
        .values({"id": 1, "full_at": now, **moved})
        .on_conflict_do_update(index_elements=["id"], set_=moved)
    )
    if state is not None:
        db.expire(state)
    return LedgerCheck(kind, mismatches, int(row.users), int(row.entries) + reread, horizon)


def _recheck(
    db: Session, suspects: list[uuid.UUID], horizon: datetime
) -> tuple[list[Mismatch], int]:
    rows = db.execute(_RECHECK, {"ids": suspects, "horizon": horizon}).all()
    mismatches = [
        Mismatch(row.id, Decimal(row.balance), Decimal(row.ledger))
        for row in rows
        if row.balance != row.ledger
    ]
    return mismatches, sum(int(row.entries) for row in rows)
