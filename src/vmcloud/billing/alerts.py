"""Low-balance warnings: a customer whose balance falls below setting
``billing.low_balance_warning`` through a charge is emailed once, as it crosses the line (not
at every charge below it). 0 turns the warning off."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy.orm import Session

from vmcloud.core import jobs
from vmcloud.site_settings import service as site_settings


def threshold(db: Session) -> Decimal:
    return Decimal(
        str(site_settings.get_value(db=db, key="billing.low_balance_warning", default="0"))
    )


def crossed(db: Session, *, before: Decimal, after: Decimal) -> bool:
    line = threshold(db)
    return line > 0 and before >= line > after


def warn(db: Session, user_ids: list[uuid.UUID]) -> None:
    from vmcloud.billing import tasks

    for user_id in user_ids:
        jobs.defer(db, tasks.send_low_balance_email, user_id=str(user_id))
