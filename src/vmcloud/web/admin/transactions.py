"""``/admin/transactions``: the whole ledger for staff (the API's admin list and filters), the
totals of the filtered rows by type and status, a user's balance against their ledger, CSV,
live as entries arrive. One entry's page and its refund: ``transactions_detail``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import service as accounts
from vmcloud.billing import service
from vmcloud.billing.api import TransactionStatus, TransactionType
from vmcloud.billing.schemas import AdminTransactionRead
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ProblemError
from vmcloud.core.pagination import MAX_LIMIT, PageParams
from vmcloud.db.session import DbSession
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CURRENCY
from vmcloud.web.admin import access, transactions_detail
from vmcloud.web.admin.access import StaffPanelUser
from vmcloud.web.admin.listing import CsvPage, Fields, csv_download, end_of, start_of
from vmcloud.web.render import fragment

router = APIRouter(include_in_schema=False)

TYPES: tuple[str, ...] = get_args(TransactionType)
STATUSES: tuple[str, ...] = get_args(TransactionStatus)
# The filter form's select options, as (value, text) pairs.
CHOICES = {"types": [(t, t) for t in TYPES], "statuses": [(s, s) for s in STATUSES]}
DEFAULT_DAYS = 30  # with no "from" in the address, the list starts this many days back
LIVE_KINDS = ("balance", "top_up")  # a new entry moves a balance or is a new top-up
CSV_COLUMNS = list(AdminTransactionRead.model_fields)
Text = Annotated[str | None, Query(max_length=320)]
Cursor = Annotated[str | None, Query(max_length=1024)]


@dataclass(frozen=True)
class LedgerView:
    """The list as the address asks for it: the form's values, their errors and the service's
    filter keywords."""

    form: dict[str, str]
    errors: dict[str, str]
    filters: dict[str, Any] = field(default_factory=dict)
    cursor: str | None = None

    @property
    def user_id(self) -> uuid.UUID | None:
        found: uuid.UUID | None = self.filters.get("user_id")
        return found

    @property
    def query(self) -> str:
        """The filter as a query string (for the stream, the CSV and the paging links)."""
        return urlencode(self.form)


def read_view(
    db: Session,
    *,
    user: str | None,
    type_: str | None,
    status: str | None,
    provider: str | None,
    from_: str | None,
    to: str | None,
    cursor: str | None = None,
) -> LedgerView:
    if from_ is None:  # not in the address at all: the recent entries
        from_ = (utcnow().date() - timedelta(days=DEFAULT_DAYS)).isoformat()
    form = {
        "user": user or "",
        "type": type_ or "",
        "status": status or "",
        "provider": (provider or "").strip(),
        "from": from_,
        "to": to or "",
    }
    read = Fields()
    filters = {
        "user_id": read.user(db, "user", form["user"]),
        "type_": read.choice("type", form["type"], TYPES),
        "status": read.choice("status", form["status"], STATUSES),
        "provider": form["provider"] or None,
        "since": start_of(read.day("from", form["from"])),
        "until": end_of(read.day("to", form["to"])),
    }
    return LedgerView(form, read.errors, filters, cursor)


def ledger_view(
    db: DbSession,
    cursor: Cursor = None,
    who: Annotated[Text, Query(alias="user")] = None,
    type: Text = None,
    status: Text = None,
    provider: Text = None,
    from_: Annotated[Text, Query(alias="from")] = None,
    to: Text = None,
) -> LedgerView:
    """The filter parameters the page, its stream and its CSV take (the CSV reads every
    page itself and ignores a cursor)."""
    return read_view(
        db, user=who, type_=type, status=status, provider=provider, from_=from_, to=to,
        cursor=cursor,
    )  # fmt: skip


Ledger = Annotated[LedgerView, Depends(ledger_view)]


def region(db: Session, view: LedgerView) -> dict[str, Any]:
    """What the live region shows: a page of entries, the totals, the user's balance check."""
    currency = site_settings.get(db, CURRENCY)
    context: dict[str, Any] = {
        "view": view,
        "currency": currency,
        "entries": [],
        "totals": [],
        "next_cursor": None,
        "emails": {},
        "balance_check": None,
    }
    if view.errors:
        return context
    entries, next_cursor = service.list_all_transactions(
        db=db, params=PageParams(cursor=view.cursor), **view.filters
    )
    totals = service.ledger_totals(db=db, **view.filters)
    context.update(
        entries=entries,
        next_cursor=next_cursor,
        totals=totals,
        net=sum((t.signed for t in totals), Decimal("0.00")),
        emails=accounts.emails_of(db=db, user_ids=[e.user_id for e in entries]),
    )
    if view.user_id is not None:
        context["balance_check"] = service.balance_check(db=db, user_id=view.user_id)
    return context


def _region_html(db: Session, view: LedgerView, *, oob: bool) -> str:
    return fragment("admin/_transactions_region.html", oob=oob, **region(db, view))


@router.get("/admin/transactions")
def transactions_page(
    request: Request,
    db: DbSession,
    user: StaffPanelUser,
    view: Ledger,
) -> Response:
    try:
        context = region(db, view)
    except ProblemError as exc:  # a cursor this list did not make
        view = LedgerView(view.form, {"cursor": exc.detail or exc.title}, view.filters)
        context = region(db, view)
    context |= CHOICES
    return access.page(
        request,
        "admin/transactions.html",
        user,
        context,
        area="transactions",
        status=422 if view.errors else 200,
    )


@router.get("/admin/transactions/stream")
async def transactions_stream(
    request: Request,
    user: StaffPanelUser,
    view: Ledger,
) -> Response:
    def resync(stream_db: Session) -> str | None:
        if view.errors or view.cursor:
            return None  # an older page or a refused filter: nothing arrives there
        return _region_html(stream_db, view, oob=True)

    def redraw_on(event: dict[str, str | None]) -> bool:
        if event.get("kind") not in LIVE_KINDS:
            return False
        return view.user_id is None or event.get("user") == str(view.user_id)

    return await access.stream(request, resync=resync, redraw_on=redraw_on)


@router.get("/admin/transactions.csv")
def transactions_csv(
    request: Request,
    db: DbSession,
    user: StaffPanelUser,
    view: Ledger,
) -> Response:
    if view.errors:
        context = region(db, view) | CHOICES
        return access.page(
            request, "admin/transactions.html", user, context, area="transactions", status=422
        )

    def read_page(page_db: Session, cursor: str | None) -> CsvPage:
        params = PageParams(limit=MAX_LIMIT, cursor=cursor)
        entries, cursor = service.list_all_transactions(db=page_db, params=params, **view.filters)
        rows = [AdminTransactionRead.model_validate(e).model_dump(mode="json") for e in entries]
        return rows, cursor

    return csv_download(request, "ledger.csv", CSV_COLUMNS, read_page)


router.include_router(transactions_detail.router)
