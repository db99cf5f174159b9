"""Support tickets: customers open and answer them, staff work them from a queue.

Status machine (an illegal change is 409)::

    open ⇄ in_progress → waiting_customer → resolved → closed
      └──────────┴──────────────┴─────────────┴────────↗ (any → closed; resolved → in_progress)

A customer's reply reopens a ``waiting_customer`` or ``resolved`` ticket (``in_progress`` when
someone is assigned, else ``open``). A staff member's public reply to an ``open`` ticket moves
it to ``in_progress``. Internal notes (``is_internal``) change no status and reach no customer:
not in a ticket, a message list, a count or an email.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.compute import service as compute
from vmcloud.core import events, jobs
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from vmcloud.core.pagination import PageParams, paginate
from vmcloud.core.ratelimit import Limit, RateLimiter
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import AUTO_CLOSE_DAYS, TICKET_CATEGORIES
from vmcloud.support.attachments import Upload, check_uploads, store_uploads
from vmcloud.support.models import SupportTicket, TicketMessage
from vmcloud.support.schemas import MessageCreate, TicketAdminUpdate, TicketCreate
from vmcloud.support.storage import Storage

STAFF_ROLES = ("support", "admin")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("in_progress", "waiting_customer", "resolved", "closed"),
    "in_progress": ("open", "waiting_customer", "resolved", "closed"),
    "waiting_customer": ("in_progress", "resolved", "closed"),
    "resolved": ("in_progress", "closed"),
    "closed": (),
}
# What is still to be done: the staff queue's default view.
OPEN_WORK = ("open", "in_progress", "waiting_customer")


def is_staff(user: User) -> bool:
    return user.role in STAFF_ROLES


def _invalid(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(
        f"The {field} is not valid: {message}.", errors=[{"field": field, "message": message}]
    )


def _notify(db: Session, event: str, ticket: SupportTicket, message_id: uuid.UUID | None) -> None:
    jobs.defer(
        db,
        "support.notify",
        event=event,
        ticket_id=str(ticket.id),
        message_id=str(message_id) if message_id else None,
    )


def _announce(db: Session, ticket: SupportTicket, *, staff_only: bool = False) -> None:
    # Open panel pages re-read the ticket (and only its public thread) once this commits.
    # ``staff_only`` (an internal note): announced to no customer, so none of the customer's
    # pages hears, even as a bare signal, that a note was written.
    user_id = None if staff_only else ticket.user_id
    events.announce(db, kind="ticket", user_id=user_id, id=ticket.id)


# -- customers ---------------------------------------------------------------------------------


# Customers: generous for people, tight for a script flooding the staff's inboxes.
OPEN_PER_ACCOUNT = Limit("ticket-open-account", hits=10, period=3600)
REPLY_PER_ACCOUNT = Limit("ticket-reply-account", hits=60, period=3600)


def _count(limiter: RateLimiter | None, limit: Limit, user: User) -> None:
    """One attempt against a customer's ``limit`` (429 past it), once the attempt is known to
    be acceptable. Each hit is one atomic statement, so concurrent requests still let through
    at most the limit; a hit that passes counts even when the request then fails."""
    if limiter is not None and not is_staff(user):
        limiter.hit(limit, str(user.id))


def open_ticket(
    *,
    db: Session,
    user: User,
    body: TicketCreate,
    limiter: RateLimiter | None = None,
    uploads: Sequence[Upload] = (),
    storage: Storage | None = None,
) -> SupportTicket:
    """A new ticket; ``uploads`` (the panel's form can attach files as it opens one) become
    the thread's first message, in the same unit of work. Counted against the hourly limit
    only once everything else is accepted: a refused ticket uses up none of it."""
    categories = site_settings.get(db, TICKET_CATEGORIES)
    category = body.category or (categories[0] if categories else None)
    if category not in categories:
        raise _invalid("category", f"one of {', '.join(categories)}")
    if body.instance_id is not None:
        try:
            compute.get_owned_instance(db=db, instance_id=body.instance_id, user=user)
        except NotFoundError:
            raise _invalid("instance_id", "no such instance of yours") from None
    check_uploads(db=db, uploads=uploads)
    _count(limiter, OPEN_PER_ACCOUNT, user)
    ticket = SupportTicket(
        id=uuid.uuid4(),
        user_id=user.id,
        subject=body.subject,
        description=body.description,
        category=category,
        priority=body.priority,
        status="open",
        instance_id=body.instance_id,
    )
    audit.label(ticket, "ticket.create")
    db.add(ticket)
    db.flush()
    if uploads:
        if storage is None:
            raise ValueError("uploads need a storage")
        stored = store_uploads(db=db, uploads=list(uploads), storage=storage)
        names = ", ".join(a["name"] for a in stored)
        message = TicketMessage(
            id=uuid.uuid4(),
            ticket_id=ticket.id,
            user_id=user.id,
            message=f"Attached when the ticket was opened: {names}",
            attachments_json=stored,
        )
        audit.label(message, "ticket.reply")
        db.add(message)
        db.flush()
    _notify(db, "new_ticket", ticket, None)
    _announce(db, ticket)
    return ticket


# Loaders named for what the caller means to do with the ticket; 404 (never 403) when the
# caller may not. Routes take them as dependencies (``support.deps``).


def _load(db: Session, ticket_id: uuid.UUID, user: User, *, lock: bool) -> SupportTicket:
    stmt = select(SupportTicket).where(SupportTicket.id == ticket_id)
    if not is_staff(user):
        stmt = stmt.where(SupportTicket.user_id == user.id)
    ticket = db.scalar(stmt.with_for_update() if lock else stmt)
    if ticket is None:
        raise NotFoundError("There is no such ticket.")
    return ticket


def get_visible_ticket(*, db: Session, ticket_id: uuid.UUID, user: User) -> SupportTicket:
    """To read: the owner's; staff read every ticket."""
    return _load(db, ticket_id, user, lock=False)


def get_changeable_ticket(*, db: Session, ticket_id: uuid.UUID, user: User) -> SupportTicket:
    """To change (reply, close, rate, work it from the queue), locked for the change: the
    owner's; staff work every ticket. What each change allows whom (internal notes, rating)
    the change itself decides."""
    return _load(db, ticket_id, user, lock=True)


def list_own(
    *, db: Session, user: User, params: PageParams, status: str | None = None
) -> tuple[list[SupportTicket], str | None]:
    stmt = select(SupportTicket).where(SupportTicket.user_id == user.id)
    if status:
        stmt = stmt.where(SupportTicket.status == status)
    return paginate(db, stmt, order_by=(SupportTicket.created_at, SupportTicket.id), params=params)


def messages_of(*, db: Session, ticket: SupportTicket, staff: bool) -> list[TicketMessage]:
    """The conversation, oldest first; internal notes only for staff."""
    stmt = select(TicketMessage).where(TicketMessage.ticket_id == ticket.id)
    if not staff:
        stmt = stmt.where(TicketMessage.is_internal.is_not(True))
    return list(db.scalars(stmt.order_by(TicketMessage.created_at, TicketMessage.id)))


def attachment_of(
    *, db: Session, ticket: SupportTicket, attachment_id: str, staff: bool, storage: Storage
) -> tuple[dict[str, Any], bytes]:
    """An attachment of a message the caller may see (``staff``: notes' too) and its bytes."""
    for message in messages_of(db=db, ticket=ticket, staff=staff):
        for meta in message.attachments_json or []:
            if meta.get("id") == attachment_id:
                try:
                    return meta, storage.get(meta["key"])
                except FileNotFoundError:
                    break
    raise NotFoundError("There is no such attachment.")


def author_roles(*, db: Session, messages: list[TicketMessage]) -> dict[uuid.UUID, str]:
    ids = {m.user_id for m in messages}
    rows = db.execute(select(User.id, User.role).where(User.id.in_(ids))).all() if ids else []
    return {row[0]: ("staff" if row[1] in STAFF_ROLES else "customer") for row in rows}


def add_message(
    *,
    db: Session,
    ticket: SupportTicket,
    author: User,
    body: MessageCreate,
    uploads: list[Upload],
    storage: Storage,
    limiter: RateLimiter | None = None,
) -> TicketMessage:
    staff = is_staff(author)
    if body.is_internal and not staff:
        raise ForbiddenError("Only staff can write internal notes.")
    if ticket.status == "closed":
        raise ConflictError(
            "The ticket is closed; open a new one.", type="invalid-state", title="Ticket closed"
        )
    check_uploads(db=db, uploads=uploads)
    _count(limiter, REPLY_PER_ACCOUNT, author)  # last: a refused reply is not counted
    message = TicketMessage(
        id=uuid.uuid4(),
        ticket_id=ticket.id,
        user_id=author.id,
        message=body.message,
        is_internal=body.is_internal,
        attachments_json=store_uploads(db=db, uploads=uploads, storage=storage) or None,
    )
    audit.label(message, "ticket.note" if body.is_internal else "ticket.reply")
    db.add(message)
    if not body.is_internal:  # a note changes nothing a customer could see, and tells no one
        if staff and author.id != ticket.user_id:
            if ticket.status == "open":
                _set_status(ticket, "in_progress")
            _notify(db, "staff_reply", ticket, message.id)
        else:
            if ticket.status in ("waiting_customer", "resolved"):
                _set_status(ticket, "in_progress" if ticket.assigned_to else "open")
            _notify(db, "customer_reply", ticket, message.id)
        ticket.updated_at = utcnow()
    db.flush()
    _announce(db, ticket, staff_only=bool(body.is_internal))
    return message


def _set_status(ticket: SupportTicket, status: str) -> None:
    ticket.status = status
    if status == "resolved":
        ticket.resolved_at = utcnow()
    elif status != "closed":  # reopened: no longer resolved
        ticket.resolved_at = None


def close(*, db: Session, ticket: SupportTicket) -> SupportTicket:
    if ticket.status == "closed":
        raise ConflictError("The ticket is already closed.", type="invalid-state")
    audit.label(ticket, "ticket.close")
    _set_status(ticket, "closed")
    db.flush()
    _announce(db, ticket)
    return ticket


def rate(*, db: Session, ticket: SupportTicket, user: User, rating: int) -> SupportTicket:
    if ticket.user_id != user.id:
        raise ForbiddenError("Only the customer who opened the ticket can rate it.")
    if ticket.status not in ("resolved", "closed"):
        raise ConflictError(
            "A ticket can be rated once it is resolved or closed.", type="invalid-state"
        )
    if ticket.satisfaction_rating is not None:
        raise ConflictError("This ticket is already rated.", type="already-rated")
    audit.label(ticket, "ticket.rate")
    ticket.satisfaction_rating = rating
    db.flush()
    _announce(db, ticket)
    return ticket


# -- staff -------------------------------------------------------------------------------------


def queue(
    *,
    db: Session,
    params: PageParams,
    status: str | None = None,
    priority: str | None = None,
    assigned_to: uuid.UUID | None = None,
    category: str | None = None,
    unassigned: bool = False,
    statuses: Sequence[str] = (),
) -> tuple[list[SupportTicket], str | None]:
    """Most urgent first, then oldest first. ``statuses``: any of these (``OPEN_WORK``: what
    is still to be done), besides ``status``."""
    stmt = select(SupportTicket)
    if statuses:
        stmt = stmt.where(SupportTicket.status.in_(statuses))
    filters: dict[str, Any] = {"status": status, "priority": priority, "category": category}
    for column, value in filters.items():
        if value:
            stmt = stmt.where(getattr(SupportTicket, column) == value)
    if assigned_to is not None:
        stmt = stmt.where(SupportTicket.assigned_to == assigned_to)
    if unassigned:
        stmt = stmt.where(SupportTicket.assigned_to.is_(None))
    return paginate(
        db,
        stmt,
        order_by=(SupportTicket.priority_rank, SupportTicket.created_at, SupportTicket.id),
        params=params,
        descending=False,
    )


def usernames(*, db: Session, user_ids: Sequence[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """Who is who on the staff's pages: customers, assignees and authors by username."""
    wanted = {i for i in user_ids if i is not None}
    if not wanted:
        return {}
    rows = db.execute(select(User.id, User.username).where(User.id.in_(wanted)))
    return {row.id: row.username for row in rows}


def active_staff(*, db: Session, limit: int = 200) -> list[User]:
    """Who a ticket can be assigned to (what ``update_ticket`` accepts), by name."""
    stmt = (
        select(User)
        .where(User.role.in_(STAFF_ROLES), User.status == "active")
        .order_by(User.username)
        .limit(limit)
    )
    return list(db.scalars(stmt))


def update_ticket(*, db: Session, ticket: SupportTicket, body: TicketAdminUpdate) -> SupportTicket:
    fields = body.model_fields_set
    audit.label(ticket, "ticket.update")
    if "assigned_to" in fields and body.assigned_to != ticket.assigned_to:
        if body.assigned_to is not None:
            assignee = db.get(User, body.assigned_to)
            if assignee is None or not is_staff(assignee) or assignee.status != "active":
                raise _invalid("assigned_to", "not an active staff member")
        ticket.assigned_to = body.assigned_to
    if body.priority is not None:
        ticket.priority = body.priority
    if body.status is not None and body.status != ticket.status:
        current = ticket.status or "open"
        if body.status not in TRANSITIONS[current]:
            raise ConflictError(
                f"A ticket that is {current} cannot become {body.status}.",
                type="invalid-transition",
                title="Not allowed in this state",
            )
        _set_status(ticket, body.status)
        if body.status == "resolved":
            _notify(db, "resolved", ticket, None)
    db.flush()
    _announce(db, ticket)
    return ticket


def auto_close(*, db: Session, now: datetime | None = None, batch: int = 500) -> int:
    """Close tickets resolved longer than ``support.auto_close_days`` ago with no reply since
    (a reply reopens a ticket, so a resolved one has had none). 0 days: never."""
    days = site_settings.get(db, AUTO_CLOSE_DAYS)
    if days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=days)
    tickets = db.scalars(
        select(SupportTicket)
        .where(SupportTicket.status == "resolved", SupportTicket.resolved_at <= cutoff)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    for ticket in tickets:
        audit.label(ticket, "ticket.auto_close")
        _set_status(ticket, "closed")
        _announce(db, ticket)
    db.flush()
    return len(tickets)


OPEN_STATUSES = ("open", "in_progress", "waiting_customer")


def queue_counts(*, db: Session) -> tuple[int, int]:
    """Tickets not yet resolved or closed, and how many of them nobody is assigned to (the
    staff overview): one statement."""
    row = db.execute(
        select(
            func.count(),
            func.count().filter(SupportTicket.assigned_to.is_(None)),
        ).where(SupportTicket.status.in_(OPEN_STATUSES))
    ).one()
    return int(row[0]), int(row[1])
