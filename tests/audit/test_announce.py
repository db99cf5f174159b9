"""A transaction that writes audit rows tells the staff's open audit pages once, when it
commits (a staff-only ``audit`` event: no user); one that writes none, or rolls back, does
not."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from tests.factories.accounts import make_user
from vmcloud.audit import service as audit
from vmcloud.core import events
from vmcloud.core.jobs import libpq_url

Event = dict[str, str | None]


@pytest.fixture
def database(fresh_database_url: str) -> Iterator[tuple[Session, psycopg.Connection]]:
    engine = create_engine(fresh_database_url)
    listener = psycopg.connect(libpq_url(fresh_database_url), autocommit=True)
    listener.execute(f"LISTEN {events.CHANNEL}")
    try:
        with Session(engine) as db:
            yield db, listener
    finally:
        listener.close()
        engine.dispose()


def audit_events(listener: psycopg.Connection) -> list[Event]:
    found = [json.loads(n.payload) for n in listener.notifies(timeout=0.5)]
    return [event for event in found if event["kind"] == "audit"]


def test_audited_changes_are_announced_once_per_transaction(
    database: tuple[Session, psycopg.Connection],
) -> None:
    db, listener = database
    make_user(db)  # an audited insert: user.create
    make_user(db)
    audit.record(db=db, action="user.logout")
    db.commit()
    assert audit_events(listener) == [{"kind": "audit", "user": None}]


def test_nothing_audited_or_rolled_back_is_not_announced(
    database: tuple[Session, psycopg.Connection],
) -> None:
    db, listener = database
    user = make_user(db)
    db.commit()
    audit_events(listener)  # the user's creation
    db.commit()  # nothing written
    audit.record(db=db, action="user.logout", actor_id=user.id)
    db.rollback()
    db.commit()
    assert audit_events(listener) == []
