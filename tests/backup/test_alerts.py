"""A failed backup, verification or drill is emailed to every active staff member."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tests.factories.accounts import make_user
from tests.helpers import JobRunner, Mailbox
from vmcloud.backup import tasks


def test_a_failure_is_emailed_to_active_staff_only(
    db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    admin = make_user(db, role="admin")
    support = make_user(db, role="support")
    gone = make_user(db, role="support", status="suspended")
    customer = make_user(db)

    tasks._alert_staff(db, "The monthly restore drill failed", "verify: checksum invalid: 1")
    assert job_runner.run("backup.") == 2

    for user in (admin, support):
        (message,) = mailbox.to(user.email)
        assert message["Subject"] == "[VMCloud] The monthly restore drill failed"
        assert "checksum invalid: 1" in message.get_content()
    assert mailbox.to(gone.email) == [] and mailbox.to(customer.email) == []
