"""Login, access tokens, refresh rotation and logout, and the attacks on them."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.accounts import passwords
from vmcloud.accounts.models import RefreshToken, User
from vmcloud.audit.models import AuditLog
from vmcloud.config import Settings

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/me"


def test_login_by_username_or_email_returns_a_token_pair(
    client: TestClient, db: Session, app_settings: Settings
) -> None:
    user = make_user(db, username="Alice", email="alice@example.com")
    for name in ("Alice", "alice", "ALICE@example.com"):
        tokens = login(client, name, PASSWORD)
        assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert tokens["expires_in"] == 15 * 60
        assert len(tokens["refresh_token"]) >= 43  # 256 bits, base64url
    claims = jwt.decode(tokens["access_token"], app_settings.jwt_key, algorithms=["HS256"])
    assert {"sub", "role", "exp", "iat", "jti"} <= set(claims)
    assert claims["sub"] == str(user.id) and claims["role"] == "customer"
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert client.get(ME, headers=bearer(tokens)).json()["username"] == "Alice"
    db.refresh(user)
    assert user.last_login_at is not None
    # Refresh tokens are stored hashed only.
    stored = db.scalars(select(RefreshToken.token).where(RefreshToken.user_id == user.id)).all()
    assert tokens["refresh_token"] not in stored
    assert all(len(s) == 64 for s in stored)


def test_wrong_password_and_unknown_account_look_identical(client: TestClient, db: Session) -> None:
    make_user(db, username="bob", email="bob@example.com")
    wrong = client.post(LOGIN, json={"login": "bob", "password": "not the password"})
    unknown = client.post(LOGIN, json={"login": "nobody", "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["type"] == "/problems/invalid-credentials"
    assert wrong.headers.keys() - {"x-request-id", "content-length"} == unknown.headers.keys() - {
        "x-request-id",
        "content-length",
    }
    # Both failures are audited (they survive the failed request), without the password.
    rows = db.scalars(select(AuditLog).where(AuditLog.action == "user.login_failed")).all()
    assert len(rows) == 2
    assert "not the password" not in json.dumps([r.metadata_json for r in rows])
    assert {r.ip_address for r in rows} == {"198.51.100.7"}


def test_unknown_account_still_spends_a_password_verification(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong login and a wrong password cost the same: one argon2 verification each, against
    a hash of the same parameters (counted, not timed: a timing comparison fails whenever the
    machine is busy)."""
    make_user(db, username="carol")
    verified: list[str] = []
    original = passwords._verify

    def counting(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return original(password_hash, password)

    monkeypatch.setattr(passwords, "_verify", counting)

    def parameters_verified(name: str) -> list[str]:
        verified.clear()
        response = client.post(LOGIN, json={"login": name, "password": "wrong wrong wrong"})
        assert response.status_code == 401, response.text
        return [h.rsplit("$", 2)[0] for h in verified]  # $argon2id$v=19$m=…,t=…,p=…

    known = parameters_verified("carol")
    unknown = parameters_verified("nobody-here")
    assert len(known) == 1
    assert unknown == known


@pytest.mark.parametrize("status", ["suspended", "banned", "closed"])
def test_inactive_accounts_cannot_log_in(client: TestClient, db: Session, status: str) -> None:
    make_user(db, username="frozen", status=status)
    response = client.post(LOGIN, json={"login": "frozen", "password": PASSWORD})
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/account-inactive"


@pytest.mark.parametrize("status", ["suspended", "banned", "closed"])
def test_suspension_stops_tokens_at_once(client: TestClient, db: Session, status: str) -> None:
    user = make_user(db, username="soon")
    tokens = login(client, "soon", PASSWORD)
    assert client.get(ME, headers=bearer(tokens)).status_code == 200
    user.status = status
    db.flush()
    assert client.get(ME, headers=bearer(tokens)).status_code == 401
    assert client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_refresh_rotates_and_a_replayed_token_kills_the_whole_login(
    client: TestClient, db: Session
) -> None:
    make_user(db, username="dave")
    first = login(client, "dave", PASSWORD)
    second = client.post(REFRESH, json={"refresh_token": first["refresh_token"]}).json()
    assert second["refresh_token"] != first["refresh_token"]
    third = client.post(REFRESH, json={"refresh_token": second["refresh_token"]}).json()
    assert client.get(ME, headers=bearer(third)).status_code == 200

    # An attacker replays the first (rotated) token: refused, and the family is revoked ...
    replay = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert replay.json()["type"] == "/problems/invalid-token"
    # ... so the newest token of that login is dead too.
    assert client.post(REFRESH, json={"refresh_token": third["refresh_token"]}).status_code == 401
    assert db.scalar(select(AuditLog).where(AuditLog.action == "user.refresh_reuse")) is not None


def test_reuse_in_one_login_leaves_other_logins_alone(client: TestClient, db: Session) -> None:
    make_user(db, username="erin")
    laptop = login(client, "erin", PASSWORD)
    phone = login(client, "erin", PASSWORD)
    client.post(REFRESH, json={"refresh_token": laptop["refresh_token"]})
    client.post(REFRESH, json={"refresh_token": laptop["refresh_token"]})  # reuse
    assert client.post(REFRESH, json={"refresh_token": phone["refresh_token"]}).status_code == 200


def test_expired_and_garbage_refresh_tokens_are_refused(client: TestClient, db: Session) -> None:
    user = make_user(db, username="fred")
    tokens = login(client, "fred", PASSWORD)
    for garbage in ("x" * 43, tokens["refresh_token"][:-2] + "AA"):
        assert client.post(REFRESH, json={"refresh_token": garbage}).status_code == 401
    db.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id)
        .values(expires_at=datetime(2000, 1, 1))
    )
    db.flush()
    assert client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_logout_revokes_that_login_only(client: TestClient, db: Session) -> None:
    make_user(db, username="gina")
    one = login(client, "gina", PASSWORD)
    two = login(client, "gina", PASSWORD)
    response = client.post(
        LOGOUT, json={"refresh_token": one["refresh_token"]}, headers=bearer(one)
    )
    assert response.status_code == 204
    assert client.post(REFRESH, json={"refresh_token": one["refresh_token"]}).status_code == 401
    assert client.post(REFRESH, json={"refresh_token": two["refresh_token"]}).status_code == 200
    assert db.scalar(select(AuditLog).where(AuditLog.action == "user.logout")) is not None


def test_logout_cannot_end_someone_elses_login(client: TestClient, db: Session) -> None:
    make_user(db, username="hank")
    make_user(db, username="ivy")
    hank = login(client, "hank", PASSWORD)
    ivy = login(client, "ivy", PASSWORD)
    response = client.post(
        LOGOUT, json={"refresh_token": ivy["refresh_token"]}, headers=bearer(hank)
    )
    assert response.status_code == 204  # says nothing ...
    assert client.post(REFRESH, json={"refresh_token": ivy["refresh_token"]}).status_code == 200


def test_logout_needs_a_login(client: TestClient) -> None:
    response = client.post(LOGOUT, json={"refresh_token": "x" * 43})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


# -- forged access tokens ----------------------------------------------------------------


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(user: User) -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": str(user.id),
        "role": "admin",
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
        "jti": "x",
        "typ": "access",
    }


def test_alg_none_is_refused(client: TestClient, db: Session) -> None:
    user = make_user(db)
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user))}."
    assert client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_token_signed_with_another_key_is_refused(client: TestClient, db: Session) -> None:
    user = make_user(db)
    token = jwt.encode(_claims(user), "another-key-" + "k" * 40, algorithm="HS256")
    assert client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_token_with_another_algorithm_is_refused(
    client: TestClient, db: Session, app_settings: Settings
) -> None:
    user = make_user(db)
    token = jwt.encode(_claims(user), app_settings.jwt_key, algorithm="HS512")
    assert client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_expired_and_tampered_tokens_are_refused(
    client: TestClient, db: Session, app_settings: Settings
) -> None:
    user = make_user(db)
    claims = _claims(user) | {"exp": datetime.now(UTC) - timedelta(seconds=1)}
    expired = jwt.encode(claims, app_settings.jwt_key, algorithm="HS256")
    assert client.get(ME, headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    valid = login(client, user.username, PASSWORD)["access_token"]
    header, payload, signature = valid.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["role"] = "admin"
    tampered = f"{header}.{_b64(forged)}.{signature}"
    assert client.get(ME, headers={"Authorization": f"Bearer {tampered}"}).status_code == 401


def test_a_token_without_required_claims_is_refused(
    client: TestClient, db: Session, app_settings: Settings
) -> None:
    user = make_user(db)
    claims = _claims(user)
    del claims["jti"]
    token = jwt.encode(claims, app_settings.jwt_key, algorithm="HS256")
    assert client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_role_comes_from_the_database_not_the_token(
    client: TestClient, db: Session, app_settings: Settings
) -> None:
    user = make_user(db)
    real = login(client, user.username, PASSWORD)["access_token"]
    sid = jwt.decode(real, app_settings.jwt_key, algorithms=["HS256"])["sid"]
    claims = _claims(user) | {"sid": sid}  # a validly signed token that says "admin"
    token = jwt.encode(claims, app_settings.jwt_key, algorithm="HS256")
    me = client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["role"] == "customer"


def test_access_tokens_end_with_their_login(client: TestClient, db: Session) -> None:
    make_user(db, username="ended")
    tokens = login(client, "ended", PASSWORD)
    assert client.get(ME, headers=bearer(tokens)).status_code == 200
    client.post(LOGOUT, json={"refresh_token": tokens["refresh_token"]}, headers=bearer(tokens))
    assert client.get(ME, headers=bearer(tokens)).status_code == 401


def test_a_token_of_a_login_that_never_existed_is_refused(
    client: TestClient, db: Session, app_settings: Settings
) -> None:
    user = make_user(db)
    token = jwt.encode(_claims(user), app_settings.jwt_key, algorithm="HS256")  # random sid
    assert client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_outdated_hash_parameters_are_upgraded_on_login(
    client: TestClient, db: Session, production_hasher: PasswordHasher
) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    user = make_user(db, username="legacy")
    user.password_hash = weak
    db.flush()
    login(client, "legacy", PASSWORD)
    db.refresh(user)
    assert user.password_hash != weak
    assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert not production_hasher.check_needs_rehash(user.password_hash)
    login(client, "legacy", PASSWORD)  # the new hash works
