"""Forgotten-password reset and password change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import JobRunner, Mailbox, bearer, login
from vmcloud.accounts.models import PasswordReset
from vmcloud.audit.models import AuditLog

REQUEST = "/api/v1/auth/password-reset/request"
CONFIRM = "/api/v1/auth/password-reset/confirm"
REFRESH = "/api/v1/auth/refresh"
CHANGE = "/api/v1/me/password"
NEW = "a brand new passphrase"


def test_reset_flow_revokes_every_session(
    client: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    make_user(db, username="kim", email="kim@example.com")
    session = login(client, "kim", PASSWORD)
    assert client.post(REQUEST, json={"email": "KIM@example.com"}).status_code == 202
    job_runner.run()
    token = mailbox.last_token("kim@example.com")
    assert token not in db.scalars(select(PasswordReset.token)).all()

    assert client.post(CONFIRM, json={"token": token, "new_password": NEW}).status_code == 204
    assert client.post(REFRESH, json={"refresh_token": session["refresh_token"]}).status_code == 401
    assert (
        client.post("/api/v1/auth/login", json={"login": "kim", "password": PASSWORD}).status_code
        == 401
    )
    login(client, "kim", NEW)
    # Single use.
    again = client.post(CONFIRM, json={"token": token, "new_password": "yet another one!"})
    assert again.status_code == 400
    assert db.scalar(select(AuditLog).where(AuditLog.action == "user.password_reset")) is not None


def test_reset_requests_answer_the_same_for_unknown_emails(
    client: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    make_user(db, email="known@example.com")
    known = client.post(REQUEST, json={"email": "known@example.com"})
    unknown = client.post(REQUEST, json={"email": "unknown@example.com"})
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    assert known.status_code == 202
    job_runner.run()
    assert [m["To"] for m in mailbox.messages()] == ["known@example.com"]


def test_expired_reset_token_is_refused(
    client: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    make_user(db, username="lee", email="lee@example.com")
    client.post(REQUEST, json={"email": "lee@example.com"})
    job_runner.run()
    token = mailbox.last_token("lee@example.com")
    db.execute(
        update(PasswordReset).values(expires_at=PasswordReset.expires_at - timedelta(hours=1))
    )
    db.flush()
    response = client.post(CONFIRM, json={"token": token, "new_password": NEW})
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/invalid-token"
    login(client, "lee", PASSWORD)  # unchanged


def test_a_new_password_must_be_long_enough(
    client: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    make_user(db, email="max@example.com")
    client.post(REQUEST, json={"email": "max@example.com"})
    job_runner.run()
    token = mailbox.last_token("max@example.com")
    response = client.post(CONFIRM, json={"token": token, "new_password": "short"})
    assert response.status_code == 422
    # The token was not spent by the failed attempt.
    assert client.post(CONFIRM, json={"token": token, "new_password": NEW}).status_code == 204


def test_using_one_reset_link_voids_the_others(
    client: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    make_user(db, email="ned@example.com")
    client.post(REQUEST, json={"email": "ned@example.com"})
    client.post(REQUEST, json={"email": "ned@example.com"})
    job_runner.run()
    first, second = (m.get_content() for m in mailbox.to("ned@example.com"))
    from tests.helpers import TOKEN_IN_LINK

    token_one = TOKEN_IN_LINK.search(first).group(1)  # type: ignore[union-attr]
    token_two = TOKEN_IN_LINK.search(second).group(1)  # type: ignore[union-attr]
    assert client.post(CONFIRM, json={"token": token_two, "new_password": NEW}).status_code == 204
    assert client.post(CONFIRM, json={"token": token_one, "new_password": NEW}).status_code == 400


def test_change_password_signs_out_other_sessions_only(client: TestClient, db: Session) -> None:
    make_user(db, username="olga")
    here = login(client, "olga", PASSWORD)
    elsewhere = login(client, "olga", PASSWORD)
    response = client.post(
        CHANGE, json={"current_password": PASSWORD, "new_password": NEW}, headers=bearer(here)
    )
    assert response.status_code == 204
    assert (
        client.post(REFRESH, json={"refresh_token": elsewhere["refresh_token"]}).status_code == 401
    )
    assert client.post(REFRESH, json={"refresh_token": here["refresh_token"]}).status_code == 200
    login(client, "olga", NEW)
    assert db.scalar(select(AuditLog).where(AuditLog.action == "user.password_change")) is not None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"current_password": "wrong password", "new_password": NEW}, 403),
        ({"current_password": PASSWORD, "new_password": "short"}, 422),
        ({"current_password": PASSWORD}, 422),
    ],
)
def test_change_password_refusals_change_nothing(
    client: TestClient, db: Session, body: dict[str, str], status: int
) -> None:
    make_user(db, username="pete")
    tokens = login(client, "pete", PASSWORD)
    assert client.post(CHANGE, json=body, headers=bearer(tokens)).status_code == status
    login(client, "pete", PASSWORD)
    assert client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]}).status_code == 200
