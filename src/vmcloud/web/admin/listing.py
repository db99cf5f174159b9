"""What the staff lists share: reading their filter forms (a user typed as an email, a
username or an id; dates and times) with a message per bad field, and their CSV downloads."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import Response, StreamingResponse

from vmcloud.accounts import service as accounts
from vmcloud.web import live
from vmcloud.web.customer.billing import safe_cell

# One page of a CSV: its rows (dicts with the columns as keys) and the next page's cursor.
CsvPage = tuple[list[dict[str, Any]], str | None]


class Fields:
    """A filter form's values read one by one; each bad one leaves a message in ``errors``
    and reads as None (the page then shows the messages and lists nothing)."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def user(self, db: Session, name: str, text: str) -> uuid.UUID | None:
        text = text.strip()
        if not text:
            return None
        try:
            return uuid.UUID(text)
        except ValueError:
            pass
        found = accounts.find_by_login(db=db, login=text)
        if found is None:
            self.errors[name] = "No user has this email, username or id."
            return None
        return found.id

    def choice(self, name: str, text: str, allowed: Sequence[str]) -> str | None:
        if not text:
            return None
        if text not in allowed:
            self.errors[name] = f"One of: {', '.join(allowed)}."
            return None
        return text

    def day(self, name: str, text: str) -> date | None:
        if not text.strip():
            return None
        try:
            return date.fromisoformat(text.strip())
        except ValueError:
            self.errors[name] = "A date like 2026-01-31."
            return None

    def moment(self, name: str, text: str) -> datetime | None:
        """A time as an ``<input type="datetime-local">`` sends it (or a date), in UTC."""
        text = text.strip()
        if not text:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            self.errors[name] = "A time like 2026-01-31T14:30 (UTC)."
            return None
        if value.tzinfo is not None:
            self.errors[name] = "A time without a zone (UTC)."
            return None
        return value

    def ident(self, name: str, text: str) -> uuid.UUID | None:
        if not text.strip():
            return None
        try:
            return uuid.UUID(text.strip())
        except ValueError:
            self.errors[name] = "An id like 3f2b8c1e-5d4a-4e7b-9c6f-0a1b2c3d4e5f."
            return None


def start_of(day: date | None) -> datetime | None:
    return datetime.combine(day, time()) if day else None


def end_of(day: date | None) -> datetime | None:
    """The first moment after ``day`` (a "to" date includes the whole day)."""
    if day is None or day == date.max:
        return None
    return datetime.combine(day + timedelta(days=1), time())


async def _csv_lines(
    request: Request,
    columns: Sequence[str],
    read_page: Callable[[Session, str | None], CsvPage],
) -> AsyncIterator[str]:
    factory: sessionmaker[Session] = request.app.state.session_factory

    def page(cursor: str | None) -> tuple[str, str | None]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        with factory() as db:
            rows, cursor = read_page(db, cursor)
        for row in rows:
            writer.writerow([safe_cell(row[column]) for column in columns])
        return buffer.getvalue(), cursor

    header = io.StringIO()
    csv.writer(header).writerow(columns)
    yield header.getvalue()
    cursor: str | None = None
    while True:
        lines, cursor = await live.read_db(request, page, cursor)
        yield lines
        if cursor is None:
            return


def csv_download(
    request: Request,
    filename: str,
    columns: Sequence[str],
    read_page: Callable[[Session, str | None], CsvPage],
) -> Response:
    """A list as CSV (cells formula-safe, as the customer's ledger), read page after page,
    each in a short session of its own that waits for a connection slot as a request does."""
    return StreamingResponse(
        _csv_lines(request, columns, read_page),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
