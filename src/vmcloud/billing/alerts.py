"""Low-balance warnings: a customer whose balance falls below setting
``billing.low_balance_warning`` through a charge is emailed once, as it crosses the line (not
at every charge below it). 0 turns the warning off."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy.orm import Session

from vmcloud.core import jobs
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import LOW_BALANCE_WARNING


def crossed(db: Session, *, before: Decimal, after: Decimal) -> bool:
    line = site_settings.get(db, LOW_BALANCE_WARNING)
    return line > 0 and before >= line > after


def warn(db: Session, user_ids: list[uuid.UUID]) -> None:
    for user_id in user_ids:
        jobs.defer(db, "billing.send_low_balance_email", user_id=str(user_id))
