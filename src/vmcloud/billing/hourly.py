"""The hourly billing run: hourly subscriptions are charged in arrears, one clock hour at a time.

An hourly subscription's ``period_start``..``period_end`` is the hour now accruing. Once that
hour is over, a run bills it in one set-based statement per batch of subscriptions:

- the exact rate is added to ``accrued`` (the fraction of a cent not yet charged); whole cents
  are charged and the rest carried, so sub-cent rates lose and invent nothing. The carry is
  rounded (half up) exactly once: at the last hour of a calendar month, or when the
  subscription ends. A month of a 0.0074/hour rate therefore costs ``round(hours * 0.0074)``;
- ``month_charged`` never passes ``monthly_cap`` (the plan's monthly price): once the month's
  charges reach it, the rest of that month is free and the carry is dropped;
- each customer's charges of the batch are taken from the balance in one guarded ``UPDATE``;
  a customer the balance does not cover is charged nothing and their subscriptions go
  ``past_due`` with the amount owed in ``amount_due`` (the caller suspends the instances);
- the period moves on one hour. Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and must
  still be due, and every charge carries the key ``hour:<start>`` under a unique index per
  subscription: a re-run, or two workers at once, never bill an hour twice.

A subscription whose ``auto_renew`` is off ends with the hour it was cancelled in (status
``cancelled``, even when that hour is unpaid; the caller deletes its instance).

Each batch announces (``core.events``) a ``balance`` change for every customer it charged and a
``subscription`` change for every customer whose subscriptions it moved.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session

from vmcloud.core import events
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import LOW_BALANCE_WARNING

BATCH = 5000

_BILL = text(
    """
    WITH due AS (
        SELECT s.id FROM subscriptions s
         WHERE s.type = 'hourly' AND s.status = 'active' AND s.period_end <= :until
           AND (CAST(:ids AS uuid[]) IS NULL OR s.id = ANY(CAST(:ids AS uuid[])))
         ORDER BY s.period_end, s.id
         LIMIT :batch
           FOR UPDATE SKIP LOCKED
    ),
    calc AS (
        SELECT s.id, s.user_id, s.instance_id, s.currency, s.rate, s.period_start, s.period_end,
               s.auto_renew, s.monthly_cap,
               -- the first hour of a calendar month starts the month's total again
               CASE WHEN date_trunc('month', s.period_start)
                         = date_trunc('month', s.period_start - interval '1 hour')
                    THEN s.month_charged ELSE 0 END AS base,
               s.accrued + s.rate AS exact,
               (date_trunc('month', s.period_end) <> date_trunc('month', s.period_start)
                OR NOT COALESCE(s.auto_renew, true)
                OR (:final AND s.period_end >= :until)) AS settle
          FROM subscriptions s JOIN due ON due.id = s.id
    ),
    owed AS (
        SELECT c.*, CASE WHEN c.settle THEN round(c.exact, 2) ELSE trunc(c.exact, 2) END AS owed
          FROM calc c
    ),
    billed AS (
        SELECT o.*, CASE WHEN o.monthly_cap IS NULL THEN o.owed
                         ELSE LEAST(o.owed, GREATEST(o.monthly_cap - o.base, 0)) END AS charge
          FROM owed o
    ),
    totals AS (
        SELECT user_id, SUM(charge) AS total FROM billed GROUP BY user_id HAVING SUM(charge) > 0
    ),
    paid AS (
        UPDATE users u SET balance = COALESCE(u.balance, 0) - t.total
          FROM totals t
         WHERE u.id = t.user_id AND COALESCE(u.balance, 0) >= t.total
        RETURNING u.id, u.balance AS after, u.balance + t.total AS before
    ),
    settled AS (
        SELECT b.*, (b.charge = 0 OR b.user_id IN (SELECT id FROM paid)) AS ok FROM billed b
    ),
    moved AS (
        UPDATE subscriptions s
           SET period_start = b.period_end,
               period_end = b.period_end + interval '1 hour',
               accrued = CASE WHEN b.settle OR b.charge < b.owed THEN 0
                              ELSE b.exact - b.owed END,
               month_charged = b.base + b.charge,
               -- a cancelled subscription ends with its hour, paid or not (an unpaid last
               -- hour stays in amount_due, written off: there is nothing left to suspend)
               status = CASE WHEN NOT COALESCE(b.auto_renew, true) THEN 'cancelled'
                             WHEN NOT b.ok THEN 'past_due'
                             ELSE 'active' END,
               amount_due = CASE WHEN b.ok THEN NULL ELSE b.charge END,
               past_due_since = CASE WHEN b.ok OR NOT COALESCE(b.auto_renew, true) THEN NULL
                                     ELSE CAST(:now AS timestamp) END,
               updated_at = :now
          FROM settled b
         WHERE s.id = b.id
        RETURNING s.id, s.status, s.user_id
    ),
    entries AS (
        INSERT INTO transactions (id, user_id, subscription_id, amount, currency, type, status,
                                  payment_method, period_key, metadata_json, processed_at,
                                  created_at)
        SELECT gen_random_uuid(), b.user_id, b.id, b.charge, b.currency, 'charge', 'completed',
               'balance', 'hour:' || to_char(b.period_start, 'YYYY-MM-DD"T"HH24'),
               jsonb_build_object('kind', 'hourly', 'instance_id', b.instance_id,
                                  'hour', b.period_start, 'rate', b.rate),
               :now, :now
          FROM settled b
         WHERE b.ok AND b.charge > 0
        RETURNING amount
    )
    SELECT (SELECT count(*) FROM moved) AS hours,
           (SELECT count(*) FROM entries) AS charges,
           (SELECT COALESCE(SUM(amount), 0) FROM entries) AS amount,
           (SELECT array_agg(id) FROM moved WHERE status = 'past_due') AS past_due,
           (SELECT array_agg(id) FROM moved WHERE status = 'cancelled') AS ended,
           (SELECT array_agg(id) FROM paid
             WHERE :warn_below > 0 AND before >= :warn_below AND after < :warn_below) AS low,
           (SELECT array_agg(id) FROM paid) AS paid_users,
           (SELECT array_agg(DISTINCT user_id) FROM moved) AS moved_users
    """
)


@dataclass
class RunResult:
    hours: int = 0  # subscription-hours billed
    charges: int = 0  # ledger entries written
    amount: Decimal = Decimal("0.00")
    past_due: list[uuid.UUID] = field(default_factory=list)
    ended: list[uuid.UUID] = field(default_factory=list)
    low_balance: list[uuid.UUID] = field(default_factory=list)  # users who just fell below

    def add(self, other: RunResult) -> None:
        self.hours += other.hours
        self.charges += other.charges
        self.amount += other.amount
        self.past_due += other.past_due
        self.ended += other.ended
        self.low_balance += other.low_balance


def bill_batch(
    *,
    db: Session,
    now: datetime,
    until: datetime | None = None,
    batch: int = BATCH,
    subscription_ids: list[uuid.UUID] | None = None,
    final: bool = False,
) -> RunResult:
    """Bill one hour of up to ``batch`` subscriptions whose accruing hour ended by ``until``
    (default ``now``). ``final``: the subscriptions end at ``until``, so their last hour
    settles the carry. Call repeatedly (committing between calls) until it bills nothing."""
    row = db.execute(
        _BILL,
        {
            "until": until or now,
            "now": now,
            "batch": batch,
            "ids": [str(i) for i in subscription_ids] if subscription_ids is not None else None,
            "final": final,
            "warn_below": site_settings.get(db, LOW_BALANCE_WARNING),
        },
    ).one()
    # Open panel pages follow: balances taken, and subscriptions moved on (a new hour, past
    # due, ended), announced per customer once this batch commits.
    events.announce_users(db, kind="balance", user_ids=row.paid_users or [])
    events.announce_users(db, kind="subscription", user_ids=row.moved_users or [])
    return RunResult(
        hours=int(row.hours),
        charges=int(row.charges),
        amount=Decimal(row.amount),
        past_due=list(row.past_due or []),
        ended=list(row.ended or []),
        low_balance=list(row.low or []),
    )


def bill_until(
    *, db: Session, now: datetime, until: datetime, subscription_ids: list[uuid.UUID], final: bool
) -> RunResult:
    """Bill the given subscriptions up to ``until`` in the caller's transaction (used when an
    instance is deleted: its hours up to the moment of deletion)."""
    total = RunResult()
    while True:
        step = bill_batch(
            db=db, now=now, until=until, subscription_ids=subscription_ids, final=final
        )
        total.add(step)
        if step.hours == 0:
            return total
