"""Keyset pagination: complete, ordered, stable under inserts, and strict about cursors."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.audit.models import AuditLog
from vmcloud.core.errors import InvalidInputError
from vmcloud.core.pagination import PageParams, decode_cursor, encode_cursor, paginate

BASE = datetime(2026, 1, 1, 12, 0, 0)
ORDER = (AuditLog.timestamp, AuditLog.id)


def _add(db: Session, offsets: list[int], action: str = "probe.page") -> list[AuditLog]:
    # Audit rows cannot be deleted (by design), so each example uses an action of its own.
    rows = [AuditLog(action=action, timestamp=BASE + timedelta(seconds=o)) for o in offsets]
    db.add_all(rows)
    db.flush()
    return rows


def _walk(
    db: Session, limit: int, descending: bool = True, action: str = "probe.page"
) -> list[list[uuid.UUID]]:
    pages: list[list[uuid.UUID]] = []
    cursor = None
    stmt = select(AuditLog).where(AuditLog.action == action)
    while True:
        rows, cursor = paginate(
            db, stmt, order_by=ORDER, params=PageParams(limit, cursor), descending=descending
        )
        pages.append([r.id for r in rows])
        if cursor is None:
            return pages


def _expected(rows: list[AuditLog], descending: bool) -> list[uuid.UUID]:
    ordered = sorted(rows, key=lambda r: (r.timestamp, r.id), reverse=descending)
    return [r.id for r in ordered]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=5), max_size=25),
    limit=st.integers(min_value=1, max_value=7),
    descending=st.booleans(),
)
def test_pages_cover_every_row_once_in_order(
    db: Session, offsets: list[int], limit: int, descending: bool
) -> None:
    # Few distinct timestamps, so ties are common and the id must break them.
    action = f"probe.page.{uuid.uuid4().hex}"
    rows = _add(db, offsets, action)
    pages = _walk(db, limit, descending, action)
    assert [i for page in pages for i in page] == _expected(rows, descending)
    assert all(len(page) <= limit for page in pages)
    assert all(len(page) == limit for page in pages[:-1])


def test_inserts_between_pages_neither_repeat_nor_skip(db: Session) -> None:
    original = _add(db, [10, 20, 20, 30, 40, 50, 60])
    stmt = select(AuditLog).where(AuditLog.action == "probe.page")
    first, cursor = paginate(db, stmt, order_by=ORDER, params=PageParams(3))
    # Newer rows arrive (what a live list sees most), plus one older than everything so far.
    _add(db, [70, 80, 5])
    seen = [r.id for r in first]
    while cursor:
        page, cursor = paginate(db, stmt, order_by=ORDER, params=PageParams(3, cursor))
        seen.extend(r.id for r in page)
    assert len(seen) == len(set(seen))
    assert {r.id for r in original} <= set(seen)
    newer = {r.id for r in db.scalars(stmt.where(AuditLog.timestamp > BASE + timedelta(60)))}
    assert not newer & set(seen)


def test_cursor_round_trip_keeps_types() -> None:
    values = [datetime(2026, 5, 1, 8, 30, 15, 123456), uuid.uuid4()]
    assert decode_cursor(encode_cursor(values), ORDER) == values


@pytest.mark.parametrize(
    "cursor",
    ["not-base64!!", "W10", encode_cursor(["yesterday", "x"]), encode_cursor([1]), "e30"],
)
def test_a_forged_cursor_is_a_validation_problem(cursor: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode_cursor(cursor, ORDER)
    assert caught.value.errors == [{"field": "cursor", "message": "invalid cursor"}]
