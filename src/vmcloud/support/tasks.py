"""Support notifications, sent by durable jobs (one job per event; the mailer retries)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from vmcloud.accounts.models import User
from vmcloud.core import jobs
from vmcloud.core.mail import Email
from vmcloud.site_settings import service as site_settings
from vmcloud.support import emails, service
from vmcloud.support.models import SupportTicket, TicketMessage
from vmcloud.support.service import STAFF_ROLES


@jobs.app.task(name="support.notify", queue="mail", retry=jobs.DEFAULT_RETRY)
def notify(event: str, ticket_id: str, message_id: str | None) -> None:
    """``staff_reply`` and ``resolved`` go to the customer; ``new_ticket`` and
    ``customer_reply`` to the assignee, or to every active staff member when unassigned."""
    with jobs.unit_of_work() as (db, runtime):
        ticket = db.get(SupportTicket, uuid.UUID(ticket_id))
        message = db.get(TicketMessage, uuid.UUID(message_id)) if message_id else None
        if ticket is None or (message is not None and message.is_internal):
            return  # an internal note never becomes an email
        customer = db.get(User, ticket.user_id)
        if customer is None:
            return
        site = str(site_settings.get_value(db=db, key="site.name", default="VMCloud"))
        base = runtime.settings.public_url
        outgoing: list[Email] = []
        if event == "staff_reply" and message is not None:
            outgoing.append(
                emails.staff_reply(
                    to=customer.email,
                    site=site,
                    subject=ticket.subject,
                    message=message.message,
                    link=f"{base}/api/v1/tickets/{ticket.id}",
                )
            )
        elif event == "resolved":
            outgoing.append(
                emails.resolved(
                    to=customer.email,
                    site=site,
                    subject=ticket.subject,
                    link=f"{base}/api/v1/tickets/{ticket.id}",
                )
            )
        elif event in ("new_ticket", "customer_reply"):
            if ticket.assigned_to is not None:
                staff = db.scalars(select(User).where(User.id == ticket.assigned_to)).all()
            else:
                staff = db.scalars(
                    select(User).where(User.role.in_(STAFF_ROLES), User.status == "active")
                ).all()
            text = message.message if message is not None else (ticket.description or "")
            for member in staff:
                outgoing.append(
                    emails.for_staff(
                        to=member.email,
                        site=site,
                        subject=ticket.subject,
                        customer=customer.username,
                        message=text,
                        new=event == "new_ticket",
                        link=f"{base}/api/v1/admin/tickets/{ticket.id}",
                    )
                )
    for email in outgoing:
        runtime.mailer.send(email)


@jobs.app.periodic(cron="17 * * * *", periodic_id="support-auto-close")
@jobs.app.task(name="support.auto_close", queue="maintenance")
def auto_close(timestamp: int) -> None:
    with jobs.unit_of_work() as (db, _):
        service.auto_close(db=db)
