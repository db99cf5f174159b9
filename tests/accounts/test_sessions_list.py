"""A user's live logins: listed (GET /me/sessions), one ended (DELETE /me/sessions/{id}), all
others ended (POST /me/sessions/revoke-others); and the second login step the panel uses."""

from __future__ import annotations

import uuid

import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.accounts import sessions, totp
from vmcloud.accounts.errors import InvalidTokenError, TwoFactorRequiredError
from vmcloud.accounts.models import RefreshToken, User
from vmcloud.accounts.schemas import TokenPair
from vmcloud.audit.models import AuditLog
from vmcloud.config import Settings
from vmcloud.core.net import RequestMeta
from vmcloud.core.ratelimit import RateLimiter

SESSIONS = "/api/v1/me/sessions"


def _login_as(client: TestClient, name: str, agent: str) -> dict[str, str]:
    client.headers["User-Agent"] = agent
    try:
        return login(client, name, PASSWORD)
    finally:
        del client.headers["User-Agent"]


def test_sessions_list_each_live_login_once_and_mark_the_callers(
    client: TestClient, db: Session
) -> None:
    user = make_user(db)
    first = _login_as(client, user.username, "Phone/1.0")
    second = _login_as(client, user.username, "Laptop/2.0")
    client.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": first["refresh_token"]},
        headers={"User-Agent": "Phone/1.0"},
    )
    ended = login(client, user.username, PASSWORD)
    client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": ended["refresh_token"]},
        headers=bearer(ended),
    )
    listed = client.get(SESSIONS, headers=bearer(second))
    assert listed.status_code == 200, listed.text
    rows = listed.json()
    assert len(rows) == 2  # the rotated login once, the logged-out one not at all
    assert {r["user_agent"] for r in rows} == {"Phone/1.0", "Laptop/2.0"}
    assert [r["current"] for r in rows if r["user_agent"] == "Laptop/2.0"] == [True]
    assert [r["current"] for r in rows if r["user_agent"] == "Phone/1.0"] == [False]
    for row in rows:
        assert row["created_at"] <= row["last_used_at"]


def test_ending_one_login_stops_its_tokens_and_is_audited(client: TestClient, db: Session) -> None:
    user = make_user(db)
    mine = login(client, user.username, PASSWORD)
    other = login(client, user.username, PASSWORD)
    target = next(
        r["id"] for r in client.get(SESSIONS, headers=bearer(mine)).json() if not r["current"]
    )
    assert client.delete(f"{SESSIONS}/{target}", headers=bearer(mine)).status_code == 204
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 401
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert refreshed.status_code == 401
    assert client.get("/api/v1/me", headers=bearer(mine)).status_code == 200
    rows = db.scalars(select(AuditLog).where(AuditLog.action == "user.logout")).all()
    assert [r.metadata_json["session_id"] for r in rows] == [target]
    # ending it again: it is gone
    assert client.delete(f"{SESSIONS}/{target}", headers=bearer(mine)).status_code == 404


def test_another_users_login_is_404_and_stays_live(client: TestClient, db: Session) -> None:
    alice, bob = make_user(db), make_user(db)
    alice_tokens = login(client, alice.username, PASSWORD)
    bob_tokens = login(client, bob.username, PASSWORD)
    bob_session = client.get(SESSIONS, headers=bearer(bob_tokens)).json()[0]["id"]
    for target in (bob_session, str(uuid.uuid4())):
        answer = client.delete(f"{SESSIONS}/{target}", headers=bearer(alice_tokens))
        assert answer.status_code == 404
    assert client.get("/api/v1/me", headers=bearer(bob_tokens)).status_code == 200
    assert client.delete(f"{SESSIONS}/not-a-uuid", headers=bearer(alice_tokens)).status_code == 422


def test_revoke_others_keeps_only_the_callers_login(client: TestClient, db: Session) -> None:
    user, bystander = make_user(db), make_user(db)
    others = [login(client, user.username, PASSWORD) for _ in range(2)]
    mine = login(client, user.username, PASSWORD)
    theirs = login(client, bystander.username, PASSWORD)
    answer = client.post(f"{SESSIONS}/revoke-others", headers=bearer(mine))
    assert answer.status_code == 204
    for tokens in others:
        assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(mine)).status_code == 200
    assert client.get("/api/v1/me", headers=bearer(theirs)).status_code == 200
    assert [r["current"] for r in client.get(SESSIONS, headers=bearer(mine)).json()] == [True]
    audit = db.scalar(select(AuditLog).where(AuditLog.action == "user.logout"))
    assert audit is not None and audit.metadata_json["sessions_revoked"] == 2


def test_sessions_need_a_login(client: TestClient) -> None:
    assert client.get(SESSIONS).status_code == 401
    assert client.post(f"{SESSIONS}/revoke-others").status_code == 401


# -- the second login step -----------------------------------------------------------------

META = RequestMeta(ip="203.0.113.7", user_agent="test")


@pytest.fixture
def limiter(app: FastAPI) -> RateLimiter:
    found: RateLimiter = app.state.rate_limiter
    return found


def _two_factor_user(db: Session, settings: Settings) -> tuple[User, str]:
    user = make_user(db)
    secret = totp.new_secret()
    user.two_factor_secret = totp.encrypt(secret, settings.fernet_key)
    user.two_factor_enabled = True
    db.flush()
    return user, secret


def _second_step(
    db: Session, limiter: RateLimiter, settings: Settings, user: User, fingerprint: str, code: str
) -> TokenPair:
    return sessions.login_second_factor(
        db=db, limiter=limiter, settings=settings, user_id=user.id,
        fingerprint=fingerprint, code=code, meta=META,
    )  # fmt: skip


def test_second_step_logs_in_with_a_code_and_shares_the_login_checks(
    db: Session, app_settings: Settings, limiter: RateLimiter
) -> None:
    user, secret = _two_factor_user(db, app_settings)
    with pytest.raises(TwoFactorRequiredError):
        sessions.login(
            db=db, limiter=limiter, settings=app_settings, login=user.email,
            password=PASSWORD, totp_code=None, meta=META,
        )  # fmt: skip
    fingerprint = sessions.password_fingerprint(user)
    with pytest.raises(TwoFactorRequiredError):
        _second_step(db, limiter, app_settings, user, fingerprint, "000000")
    pair = _second_step(db, limiter, app_settings, user, fingerprint, pyotp.TOTP(secret).now())
    assert pair.refresh_token
    db.commit()  # audit rows are written at commit (a savepoint here)
    logins = db.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id)).all()
    assert len(logins) == 1
    actions = db.scalars(select(AuditLog.action).where(AuditLog.entity_id == user.id)).all()
    assert "user.login" in actions and "user.login_failed" in actions


def test_second_step_dies_with_a_password_change_or_without_2fa(
    db: Session, app_settings: Settings, limiter: RateLimiter
) -> None:
    user, secret = _two_factor_user(db, app_settings)
    fingerprint = sessions.password_fingerprint(user)
    user.password_hash = user.password_hash + "x"
    db.flush()
    with pytest.raises(InvalidTokenError):
        _second_step(db, limiter, app_settings, user, fingerprint, pyotp.TOTP(secret).now())
    plain = make_user(db)
    with pytest.raises(InvalidTokenError):
        _second_step(db, limiter, app_settings, plain, sessions.password_fingerprint(plain), "1")
