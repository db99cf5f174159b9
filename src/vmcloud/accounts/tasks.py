"""Background jobs of the accounts domain."""

from __future__ import annotations

import uuid

from vmcloud.accounts import service
from vmcloud.core import jobs


@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.task(name="accounts.send_verification_email", queue="mail", retry=jobs.DEFAULT_RETRY)
def send_verification_email(user_id: str) -> None:
    with jobs.unit_of_work() as (db, runtime):
        service.send_verification_email(
            db=db, settings=runtime.settings, mailer=runtime.mailer, user_id=uuid.UUID(user_id)
        )


@jobs.on_stall(jobs.OnStall.RETRY)
@jobs.app.task(name="accounts.send_password_reset", queue="mail", retry=jobs.DEFAULT_RETRY)
def send_password_reset(user_id: str) -> None:
    with jobs.unit_of_work() as (db, runtime):
        service.send_password_reset(
            db=db, settings=runtime.settings, mailer=runtime.mailer, user_id=uuid.UUID(user_id)
        )


@jobs.on_stall(jobs.OnStall.FAIL)
@jobs.app.periodic(cron="37 * * * *", periodic_id="purge-expired-tokens")
@jobs.app.task(name="accounts.purge_expired_tokens", queue="maintenance")
def purge_expired_tokens(timestamp: int) -> None:
    with jobs.unit_of_work() as (db, _):
        service.purge_expired_tokens(db=db)
