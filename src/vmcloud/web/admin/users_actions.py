"""What an admin does to a user from ``/admin/users/{id}``: change the role or status, credit
the balance, log the user out everywhere. The same services (and audit rows) as the API's
admin routes; support staff are refused by the route's dependency (403), whatever the page
showed."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from vmcloud.accounts import admin as accounts
from vmcloud.accounts.schemas import UserAdminUpdate
from vmcloud.billing import adjustments
from vmcloud.billing.schemas import CreditCreate, TransactionRead
from vmcloud.core import idempotency
from vmcloud.core.errors import ProblemError
from vmcloud.db.session import DbSession
from vmcloud.web.admin.access import AdminPanelUser
from vmcloud.web.admin.users import detail_page
from vmcloud.web.forms import FormError, check_nonce, parse, settle
from vmcloud.web.render import redirect

router = APIRouter(include_in_schema=False)

Text = Annotated[str, Form(max_length=1000)]


def _back(user_id: uuid.UUID) -> str:
    return f"/admin/users/{user_id}"


@router.post("/admin/users/{user_id}/account")
def change_account(
    request: Request,
    user_id: uuid.UUID,
    db: DbSession,
    user: AdminPanelUser,
    role: Text = "",
    status: Text = "",
) -> Response:
    form = {"role": role, "status": status}
    try:
        body = parse(UserAdminUpdate, {k: v for k, v in form.items() if v})
        if not body.model_fields_set:
            raise FormError(message="Choose a role or a status.", status=422)
        target = accounts.update_user(db=db, user_id=user_id, body=body)
    except FormError as problem:
        return detail_page(request, db, user, user_id, problem, form)
    except ProblemError as exc:
        if exc.status == 404:
            raise
        return detail_page(request, db, user, user_id, settle(db, exc), form)
    flash = f"{target.email}: role {target.role}, status {target.status}."
    return redirect(request, _back(user_id), flash=flash)


@router.post("/admin/users/{user_id}/credit")
def credit(
    request: Request,
    user_id: uuid.UUID,
    db: DbSession,
    user: AdminPanelUser,
    amount: Text = "",
    reason: Text = "",
    nonce: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    form = {"amount": amount.strip(), "reason": reason.strip()}
    try:
        check_nonce(nonce)
        body = parse(CreditCreate, form)
        accounts.get_user(db=db, user_id=user_id)  # 404 before the key is claimed
        done = idempotency.once(
            db=db,
            user_id=user.id,
            key=f"panel:{nonce}",
            endpoint=f"POST /admin/users/{user_id}/credits",
            body=body,
            status=201,
            produce=lambda: TransactionRead.model_validate(
                adjustments.credit(
                    db=db, user_id=user_id, amount=body.amount, reason=body.reason, admin=user
                )
            ),
        )
    except FormError as problem:
        return detail_page(request, db, user, user_id, problem, form)
    except ProblemError as exc:
        if exc.status == 404:
            raise
        return detail_page(request, db, user, user_id, settle(db, exc), form)
    if not isinstance(done, TransactionRead):  # the same form sent again
        return redirect(
            request, _back(user_id), flash="Already credited (the form was sent twice)."
        )
    return redirect(request, _back(user_id), flash=f"Credited {done.amount:.2f} {done.currency}.")


@router.post("/admin/users/{user_id}/sessions/revoke")
def revoke_sessions(
    request: Request, user_id: uuid.UUID, db: DbSession, user: AdminPanelUser
) -> Response:
    logins, tokens = accounts.revoke_sessions(db=db, user_id=user_id)
    flash = f"Logged out everywhere: {logins} login(s) and {tokens} API token(s) ended."
    return redirect(request, _back(user_id), flash=flash)
