"""``/admin/transactions/{id}``: one ledger entry, what gave it back, and (admins) its refund
form: the API's refund (``payments.api.refund_once``: at most what is left, once per form
nonce, the same audit row)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import service as accounts
from vmcloud.accounts.models import User
from vmcloud.billing import service
from vmcloud.billing.payments import refunds
from vmcloud.billing.payments.api import refund_once
from vmcloud.billing.payments.schemas import RefundCreate
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ProblemError
from vmcloud.core.idempotency import MAX_KEY_LENGTH
from vmcloud.db.session import DbSession
from vmcloud.web.admin import access
from vmcloud.web.admin.access import AdminPanelUser, StaffPanelUser
from vmcloud.web.forms import FormError, check_nonce, parse, settle
from vmcloud.web.render import redirect

router = APIRouter(include_in_schema=False)

REFUNDABLE = ("charge", "payment")
# Refusals about how much: shown next to the amount (more than is left, or a payment's
# refund the customer's balance no longer covers).
AMOUNT_PROBLEMS = ("conflict", "insufficient-funds")


def _page(
    request: Request,
    db: Session,
    user: User,
    transaction_id: uuid.UUID,
    *,
    form: dict[str, str] | None = None,
    problem: FormError | None = None,
) -> Response:
    entry = service.get_transaction(db=db, transaction_id=transaction_id)
    given_back = service.refunds_of(db=db, transaction_id=entry.id)
    refundable = Decimal("0.00")
    if entry.status == "completed" and entry.type in REFUNDABLE:
        refundable = refunds.refundable(db, entry)
    emails = accounts.emails_of(db=db, user_ids=[entry.user_id])
    context: dict[str, Any] = {
        "entry": entry,
        "refunds": given_back,
        "refundable": refundable,
        "owner_email": emails.get(entry.user_id, ""),
        "form": form or {},
        "problem": problem,
    }
    return access.page(
        request,
        "admin/transaction.html",
        user,
        context,
        area="transactions",
        status=problem.status if problem else 200,
    )


@router.get("/admin/transactions/{transaction_id}")
def transaction_page(
    request: Request, transaction_id: uuid.UUID, db: DbSession, user: StaffPanelUser
) -> Response:
    return _page(request, db, user, transaction_id)


@router.post("/admin/transactions/{transaction_id}/refund")
def refund(
    request: Request,
    transaction_id: uuid.UUID,
    db: DbSession,
    user: AdminPanelUser,
    settings: AppSettings,
    amount: Annotated[str, Form(max_length=32)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    nonce: Annotated[str, Form(max_length=MAX_KEY_LENGTH)] = "",
) -> Response:
    form = {"amount": amount.strip(), "reason": reason.strip()}
    service.get_transaction(db=db, transaction_id=transaction_id)  # 404 before anything else
    try:
        body = parse(RefundCreate, {"amount": form["amount"] or None, "reason": form["reason"]})
        made = refund_once(
            db=db,
            admin=user,
            transaction_id=transaction_id,
            body=body,
            key=f"panel:{check_nonce(nonce)}",
            settings=settings,
        )
    except FormError as problem:
        if "reason" in problem.fields and not form["reason"]:
            problem.fields["reason"] = "Say why: the customer's ledger shows it."
        if "amount" in problem.fields:
            problem.fields["amount"] = "An amount like 12.50, or empty for all that is left."
        return _page(request, db, user, transaction_id, form=form, problem=problem)
    except ProblemError as exc:
        refused = settle(db, exc)
        if not refused.fields and exc.type in AMOUNT_PROBLEMS:
            refused.fields["amount"] = refused.message or "Not this amount."
        return _page(request, db, user, transaction_id, form=form, problem=refused)
    if isinstance(made, Response):  # the same form sent twice: refunded once
        message = "That refund was already made."
    else:
        message = f"Refunded {made.amount:.2f} {made.currency or ''}.".replace(" .", ".")
    return redirect(request, f"/admin/transactions/{transaction_id}", flash=message)
