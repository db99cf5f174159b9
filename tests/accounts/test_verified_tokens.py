"""Access tokens verified once are remembered (``accounts.deps``), never past their expiry and
never across signing keys; revocation is still checked on every request."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.accounts import deps

ME = "/api/v1/me"


def test_a_remembered_token_is_refused_once_it_expires(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user(db, username="remembered")
    headers = bearer(login(client, "remembered", PASSWORD))
    assert client.get(ME, headers=headers).status_code == 200
    assert any(token == headers["Authorization"][7:] for _, token in deps._VERIFIED)

    later = time.time() + 24 * 3600
    monkeypatch.setattr(deps.time, "time", lambda: later)
    monkeypatch.setattr("jwt.api_jwt.datetime", _FrozenDatetime(later))
    refused = client.get(ME, headers=headers)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "The access token is missing, malformed or expired."


def test_a_remembered_token_is_not_trusted_under_another_key(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user(db, username="rekeyed")
    headers = bearer(login(client, "rekeyed", PASSWORD))
    assert client.get(ME, headers=headers).status_code == 200
    settings = client.app.state.settings  # type: ignore[attr-defined]
    monkeypatch.setitem(settings.__dict__, "jwt_key", "another-key-" + "k" * 40)
    assert client.get(ME, headers=headers).status_code == 401


class _FrozenDatetime:
    """``datetime`` as PyJWT sees it, at a fixed time."""

    def __init__(self, timestamp: float) -> None:
        self._now = datetime.fromtimestamp(timestamp, tz=UTC)

    def now(self, tz: object = None) -> datetime:
        return self._now

    def __getattr__(self, name: str) -> object:
        return getattr(datetime, name)
