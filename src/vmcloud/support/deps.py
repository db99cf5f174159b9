"""Tickets for routes, loaded for what the route does (see ``docs/security.md``):
``VisibleTicket`` to read, ``ChangeableTicket`` (row-locked) to reply, close or rate, and
``QueueTicket`` (staff only, row-locked) for the staff queue's changes. Each answers 404 to a
caller who may not do that to the ticket."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from vmcloud.accounts.deps import CurrentUser, StaffUser
from vmcloud.db.session import DbSession
from vmcloud.support import service
from vmcloud.support.models import SupportTicket


def _visible(ticket_id: uuid.UUID, db: DbSession, user: CurrentUser) -> SupportTicket:
    return service.get_visible_ticket(db=db, ticket_id=ticket_id, user=user)


def _changeable(ticket_id: uuid.UUID, db: DbSession, user: CurrentUser) -> SupportTicket:
    return service.get_changeable_ticket(db=db, ticket_id=ticket_id, user=user)


def _queued(ticket_id: uuid.UUID, db: DbSession, user: StaffUser) -> SupportTicket:
    # The role is checked first: a customer is refused (403) whatever the id.
    return service.get_changeable_ticket(db=db, ticket_id=ticket_id, user=user)


VisibleTicket = Annotated[SupportTicket, Depends(_visible)]
ChangeableTicket = Annotated[SupportTicket, Depends(_changeable)]
QueueTicket = Annotated[SupportTicket, Depends(_queued)]
