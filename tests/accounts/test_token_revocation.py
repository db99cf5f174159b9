"""Recovering an account ends its personal API tokens with its logins: a password reset, and an
admin locking the user out (suspend, ban, close). A voluntary password change keeps them."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import JobRunner, Mailbox, bearer, login
from vmcloud.accounts.models import ApiToken
from vmcloud.audit.models import AuditLog

API = "/api/v1"
NEW = "a brand new passphrase"


def _token(client: TestClient, headers: dict[str, str]) -> dict[str, str]:
    body = {"name": "ci", "scopes": ["account:read"]}
    made = client.post(f"{API}/me/tokens", json=body, headers=headers)
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['token']}"}


def _live(db: Session, user_id: object) -> int:
    db.expire_all()
    rows = db.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    )
    return len(rows.all())


def test_a_password_reset_revokes_every_token(
    client: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    user = make_user(db, username="rita", email="rita@example.com")
    session = bearer(login(client, "rita", PASSWORD))
    tokens = [_token(client, session), _token(client, session)]
    assert client.get(f"{API}/me", headers=tokens[0]).status_code == 200
    assert client.post(f"{API}/auth/password-reset/request", json={"email": user.email}).is_success
    job_runner.run()
    reset = mailbox.last_token("rita@example.com")
    confirm = {"token": reset, "new_password": NEW}
    assert client.post(f"{API}/auth/password-reset/confirm", json=confirm).status_code == 204
    for token in tokens:
        assert client.get(f"{API}/me", headers=token).status_code == 401
    assert _live(db, user.id) == 0
    entry = db.scalar(select(AuditLog).where(AuditLog.action == "user.password_reset"))
    assert entry is not None and entry.metadata_json is not None
    assert entry.metadata_json["api_access_revoked"] == 2


def test_a_voluntary_password_change_keeps_the_tokens(client: TestClient, db: Session) -> None:
    user = make_user(db, username="sam")
    session = bearer(login(client, "sam", PASSWORD))
    token = _token(client, session)
    change = {"current_password": PASSWORD, "new_password": NEW}
    assert client.post(f"{API}/me/password", json=change, headers=session).status_code == 204
    assert client.get(f"{API}/me", headers=token).status_code == 200
    assert _live(db, user.id) == 1


def test_locking_a_user_out_revokes_their_tokens_for_good(client: TestClient, db: Session) -> None:
    user = make_user(db, username="lee")
    admin = make_user(db, role="admin")
    token = _token(client, bearer(login(client, "lee", PASSWORD)))
    staff = bearer(login(client, admin.username, PASSWORD))
    url = f"{API}/admin/users/{user.id}"
    assert client.patch(url, json={"status": "suspended"}, headers=staff).status_code == 200
    assert client.patch(url, json={"status": "active"}, headers=staff).status_code == 200
    assert client.get(f"{API}/me", headers=token).status_code == 401
    assert _live(db, user.id) == 0
