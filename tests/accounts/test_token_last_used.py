"""A token's "last used" write never makes a request wait for another using the same token, and
it survives the request's rollback (tests on a database of their own: they commit)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from tests.factories.accounts import make_user
from vmcloud.accounts import api_tokens
from vmcloud.accounts.models import ApiToken
from vmcloud.config import Settings
from vmcloud.db.session import make_engine

PATH = "/api/v1/instances"


@pytest.fixture
def engine(settings: Settings, fresh_database_url: str) -> Iterator[Engine]:
    engine = make_engine(settings, url=fresh_database_url)
    yield engine
    engine.dispose()


def _token(engine: Engine) -> tuple[uuid.UUID, str]:
    with Session(engine) as db:
        user = make_user(db)
        token, secret = api_tokens.create_token(
            db=db, user=user, name="ci", scopes=["instances:read"], expires_at=None
        )
        db.commit()
        return token.id, secret


def _last_used(engine: Engine, token_id: uuid.UUID) -> object:
    with Session(engine) as db:
        return db.scalar(select(ApiToken.last_used_at).where(ApiToken.id == token_id))


def test_a_request_in_flight_does_not_hold_the_token_row(engine: Engine) -> None:
    token_id, secret = _token(engine)
    with Session(engine) as first, Session(engine) as second:
        api_tokens.authenticate(db=first, secret=secret, method="GET", path=PATH + "/a")
        second.execute(text("SET lock_timeout = '1s'"))
        api_tokens.authenticate(db=second, secret=secret, method="GET", path=PATH + "/b")
        first.rollback()
        second.rollback()
    assert _last_used(engine, token_id) is not None


def test_a_locked_token_row_is_skipped_not_waited_for(engine: Engine) -> None:
    token_id, secret = _token(engine)
    with Session(engine) as holder, Session(engine) as request:
        holder.execute(select(ApiToken).where(ApiToken.id == token_id).with_for_update())
        request.execute(text("SET lock_timeout = '1s'"))
        user = api_tokens.authenticate(db=request, secret=secret, method="GET", path=PATH)
        assert user is not None
        holder.rollback()
    assert _last_used(engine, token_id) is None  # skipped this time; the next use writes it


def test_the_last_use_survives_the_requests_rollback(engine: Engine) -> None:
    token_id, secret = _token(engine)
    with Session(engine) as request:
        api_tokens.authenticate(db=request, secret=secret, method="GET", path=PATH)
        request.rollback()  # the request failed
    assert _last_used(engine, token_id) is not None
