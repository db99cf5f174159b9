"""The billing page (``/billing``): balance, runway, this month's charges per instance, recent
top-ups and the ledger (the API's own list, same order and pages), live as money moves; the
ledger as CSV (``/billing/transactions.csv``). Top-ups and subscriptions have their own
modules, included here."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import Response, StreamingResponse

from vmcloud.accounts.models import User
from vmcloud.billing import service, spending
from vmcloud.billing.schemas import TransactionRead
from vmcloud.core.errors import ProblemError
from vmcloud.core.pagination import MAX_LIMIT, PageParams
from vmcloud.db.session import DbSession
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import LOW_BALANCE_WARNING
from vmcloud.web import live
from vmcloud.web.customer import billing_subscriptions, billing_topup
from vmcloud.web.render import fragment, render
from vmcloud.web.session import LoginRequiredError, PanelUser, cookie_secret, login_of

router = APIRouter(include_in_schema=False)
router.include_router(billing_topup.router)
router.include_router(billing_subscriptions.router)

Cursor = Annotated[str | None, Query(max_length=1024)]
LIVE_PARTS = ("billing/_summary.html", "billing/_top_ups.html", "billing/_spend.html")
LIVE_KINDS = ("balance", "top_up", "subscription")  # what the page shows depends on
CSV_COLUMNS = list(TransactionRead.model_fields)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def overview(db: Session, user: User, cursor: str | None) -> dict[str, Any]:
    """Everything the billing page shows (a bad cursor is the pagination's 422)."""
    balance, currency = service.balance_of(db=db, user=user)
    entries, next_cursor = service.list_transactions(
        db=db, user=user, params=PageParams(cursor=cursor)
    )
    warn_below = site_settings.get(db, LOW_BALANCE_WARNING)
    return {
        "balance": balance,
        "currency": currency,
        "low_balance": Decimal(0) < warn_below and balance < warn_below,
        "runway": spending.runway(db=db, user_id=user.id, balance=balance),
        "spend": spending.month_to_date(db=db, user_id=user.id),
        "top_ups": spending.recent_top_ups(db=db, user_id=user.id),
        "entries": entries,
        "next_cursor": next_cursor,
        "cursor": cursor,
    }


# Where a provider's checkout sends the customer back (``?top_up=…``), what to say.
RETURNS = {
    "success": "Thank you: your balance is credited as soon as the provider confirms the payment.",
    "cancelled": "The payment was cancelled: nothing was charged.",
}


@router.get("/billing")
def billing_page(
    request: Request,
    db: DbSession,
    user: PanelUser,
    cursor: Cursor = None,
    top_up: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    context = overview(db, user, cursor)
    notice = RETURNS.get(top_up or "")
    return render(
        request, "billing/index.html", {**context, "section": "billing", "notice": notice}
    )


def stream_user(db: Session, raw: str | None) -> User | None:
    """The stream's user, read again in each render's own session."""
    login = login_of(db, raw)
    return login.user if login else None


def live_parts(db: Session, raw: str | None, cursor: str | None) -> str | None:
    user = stream_user(db, raw)
    if user is None:
        return None
    try:
        context = overview(db, user, cursor)
    except ProblemError:  # a cursor the page itself refused
        return None
    parts = [*LIVE_PARTS, "billing/_ledger.html"]
    return "".join(fragment(name, oob=True, **context) for name in parts)


@router.get("/billing/stream")
async def billing_stream(request: Request, cursor: Cursor = None) -> Response:
    raw = cookie_secret(request)
    return await live.stream(
        request,
        resync=lambda db: live_parts(db, raw, cursor),
        render=lambda db, event: (
            live_parts(db, raw, cursor) if event.get("kind") in LIVE_KINDS else None
        ),
    )


# -- the ledger as CSV -----------------------------------------------------------------------


def safe_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    if value is None:
        return ""
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_page(
    factory: sessionmaker[Session], user_id: uuid.UUID, cursor: str | None
) -> tuple[str, str | None] | None:
    """One page of the API's transaction list as CSV lines, read in a short session of its
    own, and the cursor of the next (None when the account is gone)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    with factory() as db:
        user = db.get(User, user_id)
        if user is None:
            return None
        entries, cursor = service.list_transactions(
            db=db, user=user, params=PageParams(limit=MAX_LIMIT, cursor=cursor)
        )
        for entry in entries:
            values = TransactionRead.model_validate(entry).model_dump(mode="json")
            writer.writerow([safe_cell(values[column]) for column in CSV_COLUMNS])
    return buffer.getvalue(), cursor


async def csv_rows(
    request: Request, factory: sessionmaker[Session], user_id: uuid.UUID
) -> AsyncIterator[str]:
    """The API's transaction list, page after page, as CSV with its fields as columns; each
    page waits for a connection slot as a request does."""
    header = io.StringIO()
    csv.writer(header).writerow(CSV_COLUMNS)
    yield header.getvalue()
    cursor: str | None = None
    while True:
        page = await live.read_db(request, csv_page, factory, user_id, cursor)
        if page is None:
            return
        lines, cursor = page
        yield lines
        if cursor is None:
            return


def _login_user_id(factory: sessionmaker[Session], raw: str | None) -> uuid.UUID:
    with factory() as db:
        user = stream_user(db, raw)
        if user is None:
            raise LoginRequiredError()
        return user.id


@router.get("/billing/transactions.csv")
async def transactions_csv(request: Request) -> Response:
    # No request session: the download may take a while, each page opens its own.
    factory: sessionmaker[Session] = request.app.state.session_factory
    user_id = await live.read_db(request, _login_user_id, factory, cookie_secret(request))
    return StreamingResponse(
        csv_rows(request, factory, user_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="transactions.csv"'},
    )
