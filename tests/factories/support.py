"""Support objects for tests, made through the support service so its rules hold (a category
from the settings, the opening message in the thread)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.support import service
from vmcloud.support.models import SupportTicket
from vmcloud.support.schemas import TicketCreate


def make_ticket(db: Session, user: User, **overrides: Any) -> SupportTicket:
    body = TicketCreate(**{"subject": "Help", "description": "Please", **overrides})
    return service.open_ticket(db=db, user=user, body=body)
