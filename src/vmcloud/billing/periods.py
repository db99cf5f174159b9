"""Billing periods as pure arithmetic: months, whole hours, the keys that make a charge happen
once per period, and the unused days of a paid period. No database, no clock: every function is
given the moment it works on."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

CENT = Decimal("0.01")
MONTHS = {"monthly": 1, "yearly": 12}


def add_months(value: datetime, months: int) -> datetime:
    """The same time ``months`` later; the day is clamped to the month's last (Jan 31 → Feb 28)."""
    index = value.month - 1 + months
    year, month = value.year + index // 12, index % 12 + 1
    day = min(value.day, calendar.monthrange(year, month)[1])
    return value.replace(year=year, month=month, day=day)


def next_period_end(start: datetime, cycle: str) -> datetime:
    """Where a monthly or yearly period that starts at ``start`` ends."""
    return add_months(start, MONTHS[cycle])


def floor_hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def ceil_hour(value: datetime) -> datetime:
    floor = floor_hour(value)
    return floor if floor == value else floor + timedelta(hours=1)


def period_key(prefix: str, moment: datetime) -> str:
    """The key of what happens once per period (``period:<start>``, ``refund:<start>``, …);
    the ledger allows one entry per subscription and key."""
    return f"{prefix}:{moment.isoformat(timespec='seconds')}"


def unused_days_refund(price: Decimal, start: datetime, end: datetime, now: datetime) -> Decimal:
    """The price of the whole days left in a paid period (rounded down to the cent)."""
    total_days = (end - start).days
    unused = (end - now).days if now < end else 0
    if total_days <= 0 or unused <= 0:
        return Decimal("0.00")
    return (price * unused / total_days).quantize(CENT, rounding=ROUND_DOWN)
