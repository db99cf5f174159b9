"""Keyset pagination shared by every list endpoint.

A page is ordered by a tuple of columns that ends in a unique one (usually
``(created_at, id)``); the cursor carries the last row's values of those columns, and the next
page continues strictly after them. Unlike ``OFFSET``, rows inserted or deleted meanwhile never
shift a page: nothing is repeated and nothing that existed is skipped.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import Integer, Row, Select, bindparam, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from vmcloud.core.errors import InvalidInputError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")
ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None


ReadT = TypeVar("ReadT", bound=BaseModel)


def page_of(schema: type[ReadT], rows: Iterable[object], cursor: str | None) -> Page[ReadT]:
    """A page of ``rows`` (ORM objects) read through ``schema``, and the cursor to the next."""
    return Page[schema](  # type: ignore[valid-type]
        items=[schema.model_validate(row) for row in rows], next_cursor=cursor
    )


@cache
def _page_adapter(schema: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(Page[schema])  # type: ignore[valid-type]


def page_response(schema: type[BaseModel], rows: Sequence[object], cursor: str | None) -> Response:
    """A page of ``rows`` (result rows, or any objects with the schema's fields as attributes)
    through ``schema``, validated and serialised to JSON in one pass of pydantic-core.

    For read paths that select just the columns a view needs (:class:`PageStatement`): the
    route keeps ``response_model=Page[schema]`` for its documentation and returns this
    response as it is, so nothing is validated or converted twice."""
    adapter = _page_adapter(schema)
    if rows and isinstance(rows[0], Row):
        # Result rows as dicts (pydantic-core reads a dict far faster than a row's attributes).
        keys = rows[0]._fields
        items: Sequence[object] = [dict(zip(keys, row, strict=True)) for row in rows]  # type: ignore[call-overload]
        page = adapter.validate_python({"items": items, "next_cursor": cursor})
    else:
        page = adapter.validate_python({"items": rows, "next_cursor": cursor}, from_attributes=True)
    return Response(adapter.dump_json(page), media_type="application/json")


@dataclass(frozen=True)
class PageParams:
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


async def _page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


PageQuery = Annotated[PageParams, Depends(_page_params)]


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value


_INT64 = 2**63


def _decode_value(raw: Any, python_type: type) -> Any:
    if python_type is int and isinstance(raw, int) and not isinstance(raw, bool):
        if -_INT64 <= raw < _INT64:
            return raw
    elif isinstance(raw, str):
        # JSON escapes can carry what no column holds: a NUL, a lone surrogate (not UTF-8).
        if "\x00" in raw:
            raise ValueError("NUL in a cursor value")
        raw.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate
        if python_type is str:
            return raw
        if python_type is datetime:
            return datetime.fromisoformat(raw)
        if python_type is uuid.UUID:
            return uuid.UUID(raw)
        if python_type is Decimal:
            value = Decimal(raw)
            if value.is_finite():
                return value
    raise ValueError(f"unexpected cursor value for {python_type.__name__}")


def encode_cursor(values: Sequence[Any]) -> str:
    payload = json.dumps([_encode_value(v) for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, columns: Sequence[InstrumentedAttribute[Any]]) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(raw, list) or len(raw) != len(columns):
            raise ValueError("wrong shape")
        return [
            _decode_value(value, col.property.columns[0].type.python_type)
            for value, col in zip(raw, columns, strict=True)
        ]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            "The cursor is not valid for this list; start again without one.",
            errors=[{"field": "cursor", "message": "invalid cursor"}],
        ) from exc


def keyset(
    stmt: Select[T],
    *,
    order_by: Sequence[InstrumentedAttribute[Any]],
    params: PageParams,
    descending: bool = True,
) -> Select[T]:
    """``stmt`` as one page: after the cursor, in ``order_by`` order, one row more than the
    page (to know whether another follows). An index on the filter's equality columns followed
    by ``order_by`` reads exactly that many rows, however many match."""
    if params.cursor:
        after = decode_cursor(params.cursor, order_by)
        key = tuple_(*order_by)
        stmt = stmt.where(key < tuple_(*after) if descending else key > tuple_(*after))
    ordering = [col.desc() if descending else col.asc() for col in order_by]
    return stmt.order_by(*ordering).limit(params.limit + 1)


def _cut(rows: list[Any], limit: int, last_key: Any) -> tuple[list[Any], str | None]:
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, encode_cursor(last_key(page[-1]))


def paginate(
    db: Session,
    stmt: Select[T],
    *,
    order_by: Sequence[InstrumentedAttribute[Any]],
    params: PageParams,
    descending: bool = True,
) -> tuple[list[T], str | None]:
    """Run ``stmt`` (a ``select(Model)``) one page at a time, ordered by ``order_by``.

    The last column of ``order_by`` must be unique and no column may be NULL, so that the order
    is total and each row has exactly one place.
    """
    page = keyset(stmt, order_by=order_by, params=params, descending=descending)
    rows = list(db.scalars(page))
    return _cut(rows, params.limit, lambda last: [getattr(last, col.key) for col in order_by])


@dataclass(frozen=True)
class PageStatement:
    """A list's page statement built once per shape (which filters, first page or not) and
    run with each request's values bound: building a statement and its cache key costs more
    than running it. :meth:`run` returns result rows (no ORM objects) with the cursors and
    guarantees of :func:`paginate`; the statement must select the ``order_by`` columns under
    their own names.

    Filters are bind parameters of ``stmt`` (``bindparam("user_id")``); the page adds
    ``after_0`` ... (the cursor's values) and ``page_limit``.
    """

    stmt: Select[Any]
    order_by: tuple[InstrumentedAttribute[Any], ...]

    @classmethod
    def build(
        cls,
        stmt: Select[Any],
        *,
        order_by: Sequence[InstrumentedAttribute[Any]],
        after_cursor: bool,
        descending: bool = True,
    ) -> PageStatement:
        if after_cursor:
            key = tuple_(*order_by)
            after = tuple_(*[bindparam(f"after_{i}", type_=c.type) for i, c in enumerate(order_by)])
            stmt = stmt.where(key < after if descending else key > after)
        ordering = [col.desc() if descending else col.asc() for col in order_by]
        limited = stmt.order_by(*ordering).limit(bindparam("page_limit", type_=Integer()))
        return cls(limited, tuple(order_by))

    def values(self, params: PageParams) -> dict[str, Any]:
        values: dict[str, Any] = {"page_limit": params.limit + 1}
        if params.cursor:
            after = decode_cursor(params.cursor, self.order_by)
            values |= {f"after_{i}": value for i, value in enumerate(after)}
        return values

    def run(
        self, db: Session, params: PageParams, **filters: Any
    ) -> tuple[list[Row[Any]], str | None]:
        # On the session's connection: result rows need none of the ORM's execution path.
        rows = list(db.connection().execute(self.stmt, self.values(params) | filters).all())
        order_by = self.order_by
        return _cut(rows, params.limit, lambda last: [last._mapping[c.key] for c in order_by])
