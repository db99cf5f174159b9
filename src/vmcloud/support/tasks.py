"""Support notifications, sent by durable jobs: one job decides who hears of an event, and
each recipient's email is a job of its own (a failed send is retried without repeating the
others)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.core import jobs
from vmcloud.core.mail import Email
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import SITE_NAME
from vmcloud.support import emails, service
from vmcloud.support.models import SupportTicket, TicketMessage
from vmcloud.support.service import STAFF_ROLES

TO_CUSTOMER = ("staff_reply", "resolved")
TO_STAFF = ("new_ticket", "customer_reply")


def _active_staff(db: Session, only: uuid.UUID | None = None) -> list[User]:
    stmt = select(User).where(User.role.in_(STAFF_ROLES), User.status == "active")
    if only is not None:
        stmt = stmt.where(User.id == only)
    return list(db.scalars(stmt))


@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.task(name="support.notify", queue="mail", retry=jobs.DEFAULT_RETRY)
def notify(event: str, ticket_id: str, message_id: str | None) -> None:
    """``staff_reply`` and ``resolved`` go to the customer; ``new_ticket`` and
    ``customer_reply`` to the assignee, or to every active staff member when nobody (active
    and still staff) is assigned."""
    with jobs.unit_of_work() as (db, _):
        ticket = db.get(SupportTicket, uuid.UUID(ticket_id))
        if ticket is None:
            return
        if event in TO_CUSTOMER:
            recipients = [ticket.user_id]
        elif event in TO_STAFF:
            assignee = _active_staff(db, ticket.assigned_to) if ticket.assigned_to else []
            recipients = [u.id for u in assignee or _active_staff(db)]
        else:
            return
        for user_id in recipients:
            jobs.defer(
                db,
                send,
                event=event,
                ticket_id=ticket_id,
                message_id=message_id,
                user_id=str(user_id),
            )


@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.task(name="support.send", queue="mail", retry=jobs.DEFAULT_RETRY)
def send(event: str, ticket_id: str, message_id: str | None, user_id: str) -> None:
    with jobs.unit_of_work() as (db, runtime):
        email = _compose(db, runtime.settings.public_url, event, ticket_id, message_id, user_id)
    if email is not None:
        runtime.mailer.send(email)


def _compose(
    db: Session, base: str, event: str, ticket_id: str, message_id: str | None, user_id: str
) -> Email | None:
    ticket = db.get(SupportTicket, uuid.UUID(ticket_id))
    message = db.get(TicketMessage, uuid.UUID(message_id)) if message_id else None
    to = db.get(User, uuid.UUID(user_id))
    if ticket is None or to is None or (message is not None and message.is_internal):
        return None  # an internal note never becomes an email
    site = site_settings.get(db, SITE_NAME)
    link = f"{base.rstrip('/')}/support/{ticket.id}"  # the customer's ticket page
    if event == "staff_reply" and message is not None:
        return emails.staff_reply(
            to=to.email, site=site, subject=ticket.subject, message=message.message, link=link
        )
    if event == "resolved":
        if ticket.status != "resolved":
            return None  # reopened before the email went out
        return emails.resolved(to=to.email, site=site, subject=ticket.subject, link=link)
    if event in TO_STAFF:
        if to.role not in STAFF_ROLES or to.status != "active":
            return None  # no longer staff since the event
        customer = db.get(User, ticket.user_id)
        return emails.for_staff(
            to=to.email,
            site=site,
            subject=ticket.subject,
            customer=customer.username if customer else "a customer",
            message=message.message if message is not None else (ticket.description or ""),
            new=event == "new_ticket",
            link=f"{base.rstrip('/')}/admin/tickets/{ticket.id}",  # the staff's ticket page
        )
    return None


@jobs.on_stall(jobs.OnStall.FAIL)
@jobs.app.periodic(cron="17 * * * *", periodic_id="support-auto-close")
@jobs.app.task(name="support.auto_close", queue="maintenance")
def auto_close(timestamp: int) -> None:
    with jobs.unit_of_work() as (db, _):
        service.auto_close(db=db)
