"""The support pages' forms: open a ticket (under the form's nonce as its idempotency key, so
a double submit opens one), reply with files, close (confirmed), rate once. A refusal
re-renders the form with the service's message and status, and stores nothing
(``forms.settle``)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts.deps import Limiter
from vmcloud.accounts.models import User
from vmcloud.core import idempotency
from vmcloud.core.deps import AppSettings
from vmcloud.core.errors import ProblemError
from vmcloud.db.session import DbSession
from vmcloud.support import service
from vmcloud.support.schemas import MessageCreate, RatingCreate, TicketCreate, TicketRead
from vmcloud.support.storage import storage_for
from vmcloud.web.customer.support import PostedForm, new_form_choices, ticket_page
from vmcloud.web.forms import FormError, check_nonce, parse, settle
from vmcloud.web.render import redirect, render
from vmcloud.web.session import PanelUser

router = APIRouter(include_in_schema=False)
NEW_FIELDS = ("subject", "category", "priority", "instance_id", "description")


def new_page(
    request: Request,
    db: Session,
    user: User,
    form: dict[str, str],
    problem: FormError | None = None,
) -> Response:
    return render(
        request,
        "support/new.html",
        {**new_form_choices(db, user), "form": form, "problem": problem, "section": "support"},
        status=problem.status if problem else 200,
        headers=problem.headers if problem else None,
    )


@router.get("/support/new")
def new_ticket_page(request: Request, db: DbSession, user: PanelUser) -> Response:
    # ?instance= preselects one (the instance page can link here).
    return new_page(request, db, user, {"instance_id": request.query_params.get("instance", "")})


def _ticket_body(form: dict[str, str]) -> TicketCreate:
    values: dict[str, Any] = {k: v for k, v in form.items() if v}
    values.setdefault("subject", "")
    values.setdefault("description", "")
    return parse(TicketCreate, values)


@router.post("/support/new")
def open_ticket(
    request: Request,
    db: DbSession,
    user: PanelUser,
    posted: PostedForm,
    limiter: Limiter,
    settings: AppSettings,
) -> Response:
    form = {name: posted.text(name) for name in NEW_FIELDS}
    try:
        if posted.problem is not None:
            raise posted.problem
        nonce = check_nonce(posted.text("nonce"))
        body = _ticket_body(form)
        opened = idempotency.once(
            db=db,
            user_id=user.id,
            key=f"panel:{nonce}",
            endpoint="POST /tickets",
            body=body,
            status=201,
            produce=lambda: TicketRead.model_validate(
                service.open_ticket(
                    db=db,
                    user=user,
                    body=body,
                    limiter=limiter,
                    uploads=posted.uploads,
                    storage=storage_for(settings),
                )
            ),
        )
    except FormError as problem:
        return new_page(request, db, user, form, problem)
    except ProblemError as exc:
        return new_page(request, db, user, form, settle(db, exc))
    if isinstance(opened, TicketRead):
        ticket_id = opened.id
    else:  # a replay of the same submit: the ticket it opened
        ticket_id = uuid.UUID(json.loads(bytes(opened.body))["id"])
    return redirect(request, f"/support/{ticket_id}", flash="Your ticket is open.")


def _refused(
    request: Request,
    db: Session,
    ticket_id: uuid.UUID,
    user: User,
    problem: FormError,
    form: dict[str, str] | None = None,
) -> Response:
    """The ticket page again, with what was wrong (after ``settle`` rolled the attempt back)."""
    ticket = service.get_visible_ticket(db=db, ticket_id=ticket_id, user=user)
    return ticket_page(request, db, ticket, problem, form)


@router.post("/support/{ticket_id}/messages")
def reply(
    request: Request,
    ticket_id: uuid.UUID,
    db: DbSession,
    user: PanelUser,
    posted: PostedForm,
    limiter: Limiter,
    settings: AppSettings,
) -> Response:
    form = {"message": posted.text("message")}
    # The form was read before the ticket is loaded: its row lock is not held while a browser
    # sends its files.
    ticket = service.get_changeable_ticket(db=db, ticket_id=ticket_id, user=user)
    try:
        if posted.problem is not None:
            raise posted.problem
        body = parse(MessageCreate, {"message": form["message"]})
        service.add_message(
            db=db,
            ticket=ticket,
            author=user,
            body=body,
            uploads=posted.uploads,
            storage=storage_for(settings),
            limiter=limiter,
        )
    except FormError as problem:
        db.rollback()
        return _refused(request, db, ticket_id, user, problem, form)
    except ProblemError as exc:
        return _refused(request, db, ticket_id, user, settle(db, exc), form)
    return redirect(request, f"/support/{ticket_id}#thread-end", flash="Reply sent.")


@router.post("/support/{ticket_id}/close")
def close(
    request: Request, ticket_id: uuid.UUID, db: DbSession, user: PanelUser, posted: PostedForm
) -> Response:
    ticket = service.get_changeable_ticket(db=db, ticket_id=ticket_id, user=user)
    if posted.text("confirm") != "yes":
        db.rollback()
        problem = FormError(
            fields={"confirm": "Tick the box to confirm."},
            message="Confirm that you want to close the ticket.",
        )
        return _refused(request, db, ticket_id, user, problem)
    try:
        service.close(db=db, ticket=ticket)
    except ProblemError as exc:
        return _refused(request, db, ticket_id, user, settle(db, exc))
    return redirect(request, f"/support/{ticket_id}", flash="Ticket closed.")


@router.post("/support/{ticket_id}/rating")
def rate(
    request: Request, ticket_id: uuid.UUID, db: DbSession, user: PanelUser, posted: PostedForm
) -> Response:
    ticket = service.get_changeable_ticket(db=db, ticket_id=ticket_id, user=user)
    try:
        body = parse(RatingCreate, {"rating": posted.text("rating")}, lax=True)
        service.rate(db=db, ticket=ticket, user=user, rating=body.rating)
    except FormError as problem:
        db.rollback()
        return _refused(request, db, ticket_id, user, problem)
    except ProblemError as exc:
        return _refused(request, db, ticket_id, user, settle(db, exc))
    return redirect(request, f"/support/{ticket_id}", flash="Thank you for rating the help.")
