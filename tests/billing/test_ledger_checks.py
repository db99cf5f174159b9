"""The ledger check reads what changed since the last check (and the whole ledger weekly or on
demand): a balance changed behind the ledger's back is caught either way, an old entry changed
behind its back by the full check, and entries committed late are neither lost nor a false
alarm."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.factories.accounts import make_user
from tests.helpers import JobRunner
from vmcloud.accounts.models import User
from vmcloud.billing import ledger, tasks, verification
from vmcloud.billing.models import LedgerCheckpointSum, Transaction
from vmcloud.cli import app as cli_app
from vmcloud.config import Settings
from vmcloud.db.session import make_engine

NOW = timedelta(0)  # no safety margin: entries stamped before a check are behind its horizon


def _credit(db: Session, user: User | uuid.UUID, amount: str = "1.00") -> Transaction:
    user_id = user if isinstance(user, uuid.UUID) else user.id
    return ledger.post(
        db=db, user_id=user_id, type_="credit", amount=Decimal(amount), currency="USD"
    )


def _completed(db: Session) -> int:
    return db.scalar(select(func.count()).where(Transaction.status == "completed")) or 0


def _tamper_balance(db: Session, user: User, by: str) -> None:
    db.execute(
        text("UPDATE users SET balance = balance + :by WHERE id = :id"),
        {"by": Decimal(by), "id": user.id},
    )


def test_the_first_check_is_full_and_later_ones_read_only_new_entries(db: Session) -> None:
    users = [make_user(db, balance="50") for _ in range(3)]
    for user in users:
        for _ in range(4):
            _credit(db, user)

    first = verification.check(db=db, margin=NOW)
    assert first.kind == "full" and first.mismatches == []
    assert first.entries_read == _completed(db)
    assert first.users_checked == db.scalar(select(func.count()).select_from(User))

    new = [_credit(db, users[0]), _credit(db, users[1]), _credit(db, users[1], "2.50")]
    second = verification.check(db=db, margin=NOW)
    assert second.kind == "incremental" and second.mismatches == []
    assert second.entries_read == len(new)
    assert second.users_checked == first.users_checked  # every balance, however quiet

    assert verification.check(db=db, margin=NOW).entries_read == 0
    _credit(db, users[2])
    assert verification.check(db=db, margin=NOW).entries_read == 1
    # What the checkpoint holds is what the ledger says.
    settled = db.get(LedgerCheckpointSum, users[1].id, populate_existing=True)
    assert settled is not None
    assert settled.settled == Decimal("50") + 4 + 1 + Decimal("2.50")


def test_an_incremental_check_catches_a_balance_changed_behind_the_ledger(db: Session) -> None:
    active, quiet = make_user(db, balance="20"), make_user(db, balance="30")
    verification.check(db=db, margin=NOW)

    _credit(db, active, "5")
    _tamper_balance(db, active, "100")
    _tamper_balance(db, quiet, "-1")
    found = verification.check(db=db, margin=NOW)

    assert found.kind == "incremental"
    by_user = {m.user_id: m for m in found.mismatches}
    assert set(by_user) == {active.id, quiet.id}
    assert (by_user[active.id].balance, by_user[active.id].ledger) == (Decimal("125"), 25)
    assert (by_user[quiet.id].balance, by_user[quiet.id].ledger) == (Decimal("29"), 30)
    # Still reported at the next check: a difference does not vanish by being seen once.
    assert {m.user_id for m in verification.check(db=db, margin=NOW).mismatches} == set(by_user)


def test_a_full_check_catches_an_old_entry_changed_behind_the_ledger(db: Session) -> None:
    user = make_user(db, balance="40")
    old = _credit(db, user, "3")
    assert verification.check(db=db, margin=NOW).mismatches == []

    db.execute(text("UPDATE transactions SET amount = 30 WHERE id = :id"), {"id": old.id})
    # Its sum is in the checkpoint: the quick check cannot see it, the full one does.
    assert verification.check(db=db, margin=NOW).mismatches == []
    found = verification.check(db=db, full=True, margin=NOW)

    assert found.kind == "full"
    assert [(m.user_id, m.balance, m.ledger) for m in found.mismatches] == [
        (user.id, Decimal("43"), Decimal("70"))
    ]
    assert found.entries_read == _completed(db)


def test_an_entry_stamped_behind_the_horizon_is_summed_without_a_false_alarm(
    db: Session,
) -> None:
    user = make_user(db, balance="10")
    before = verification.check(db=db, margin=NOW)

    late = _credit(db, user, "4")
    stamped = before.horizon - timedelta(hours=1)
    db.execute(
        text("UPDATE transactions SET processed_at = :t WHERE id = :id"),
        {"t": stamped, "id": late.id},
    )
    found = verification.check(db=db, margin=NOW)

    assert found.mismatches == []
    settled = db.get(LedgerCheckpointSum, user.id, populate_existing=True)
    assert settled is not None and settled.settled == Decimal("14")
    # Repaired: the next check has nothing to read again.
    again = verification.check(db=db, margin=NOW)
    assert (again.mismatches, again.entries_read) == ([], 0)


def test_the_horizon_waits_for_transactions_still_open(
    settings: Settings, fresh_database_url: str
) -> None:
    """An entry whose transaction commits after a check's snapshot is read by the next check as
    a new entry: the horizon stayed before the start of its transaction."""
    engine = make_engine(settings, fresh_database_url)
    try:
        with Session(engine) as db:
            user_id = make_user(db, balance="10").id
            verification.check(db=db, margin=NOW)
            db.commit()
        with Session(engine) as slow:
            _credit(slow, user_id, "6")  # stamped now, committed after the next check
            started = slow.scalar(text("SELECT now() AT TIME ZONE 'UTC'"))
            with Session(engine) as db:
                during = verification.check(db=db, margin=NOW)
                db.commit()
            assert during.horizon <= started
            assert during.mismatches == [] and during.entries_read == 0
            slow.commit()
        with Session(engine) as db:
            after = verification.check(db=db, margin=NOW)
            db.commit()
            # Read as the one new entry, not found out of line and reread with its history.
            assert (after.mismatches, after.entries_read) == ([], 1)
            assert verification.check(db=db, full=True).mismatches == []
    finally:
        engine.dispose()


def test_the_jobs_report_mismatches(
    db: Session, job_runner: JobRunner, caplog: pytest.LogCaptureFixture
) -> None:
    user = make_user(db, balance="8")
    _tamper_balance(db, user, "1")
    tasks.verify_ledger(timestamp=0)
    assert tasks.LEDGER_MISMATCHES._value.get() >= 1  # type: ignore[attr-defined]
    db.execute(text("UPDATE users SET balance = balance - 1 WHERE id = :id"), {"id": user.id})
    tasks.verify_ledger_full(timestamp=0)
    assert tasks.LEDGER_MISMATCHES._value.get() == 0  # type: ignore[attr-defined]


def test_verify_full_through_the_command(
    clean_env: pytest.MonkeyPatch, settings: Settings, fresh_database_url: str
) -> None:
    clean_env.setenv("DATABASE_URL", fresh_database_url)
    engine: Engine = make_engine(settings, fresh_database_url)
    try:
        with Session(engine) as db:
            user_id = make_user(db, balance="9").id
            # An entry of yesterday: behind the horizon of the first check.
            db.execute(
                text("UPDATE transactions SET processed_at = processed_at - interval '1 day'")
            )
            db.commit()
            first = CliRunner().invoke(cli_app, ["billing", "verify"])
            assert first.exit_code == 0, first.output
            assert "full check" in first.output  # no checkpoint yet
            quick = CliRunner().invoke(cli_app, ["billing", "verify"])
            assert quick.exit_code == 0 and "incremental check" in quick.output, quick.output
            db.execute(
                text("UPDATE transactions SET amount = 90 WHERE user_id = :id"), {"id": user_id}
            )
            db.commit()
            assert CliRunner().invoke(cli_app, ["billing", "verify"]).exit_code == 0
            full = CliRunner().invoke(cli_app, ["billing", "verify", "--full"])
            assert full.exit_code == 1, full.output
            assert f"MISMATCH user {user_id}: balance 9.00 but ledger 90.00" in full.output
    finally:
        engine.dispose()
