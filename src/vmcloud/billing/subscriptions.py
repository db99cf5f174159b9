"""Subscriptions: what instances cost, charged up front (monthly, yearly) or in arrears
(hourly, see ``billing.hourly``), renewed, suspended when unpaid and ended."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session


def settle_debts(*, db: Session, user_id: uuid.UUID, now: datetime | None = None) -> None:
    """Charge the user's past-due subscriptions, oldest first, as far as the balance goes;
    each one paid is active again and its instance resumed. Call after money came in."""
    # Implemented with the rest of the subscription service.
