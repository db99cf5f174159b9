"""Registration, email verification and resending, through the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.factories.accounts import make_user
from tests.helpers import JobRunner, Mailbox, login
from vmcloud.accounts.models import EmailVerification, User
from vmcloud.audit.models import AuditLog
from vmcloud.site_settings.models import Setting

REGISTER = "/api/v1/auth/register"
VERIFY = "/api/v1/auth/verify-email"
RESEND = "/api/v1/auth/resend-verification"


def _register(client: TestClient, **overrides: object) -> dict[str, object]:
    body = {"email": "New.User@Example.com", "username": "new.user", "password": "s3cret-enough"}
    body.update(overrides)
    response = client.post(REGISTER, json=body)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data


def test_register_verify_then_login(
    client: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    user = _register(client, first_name="Ada", phone="+44 20 7946 0000")
    assert user["email"] == "new.user@example.com"  # stored lower-cased
    assert user["role"] == "customer"
    assert user["email_verified"] is False
    assert user["balance"] == "0.00"
    assert "password" not in str(user) and "password_hash" not in user

    # The email is sent by a job, not by the request.
    assert mailbox.messages() == []
    assert job_runner.run() == 1
    token = mailbox.last_token("new.user@example.com")

    stored = db.scalars(select(EmailVerification.token)).all()
    assert token not in stored  # only the hash is kept
    assert len(stored) == 1 and len(stored[0]) == 64

    assert client.post(VERIFY, json={"token": token}).json() == {"email_verified": True}
    assert db.scalar(select(User.email_verified).where(User.username == "new.user")) is True
    # Single use.
    again = client.post(VERIFY, json={"token": token})
    assert again.status_code == 400
    assert again.json()["type"] == "/problems/invalid-token"

    tokens = login(client, "NEW.USER@example.com", "s3cret-enough")
    assert tokens["token_type"] == "bearer"

    actions = set(db.scalars(select(AuditLog.action)))
    assert {"user.register", "user.verify_email", "user.login"} <= actions


def test_password_hash_is_argon2id_phc(
    client: TestClient, db: Session, production_hasher: object
) -> None:
    _register(client)
    stored = db.scalar(select(User.password_hash).where(User.username == "new.user"))
    assert stored is not None
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert "s3cret-enough" not in stored


def test_long_passwords_are_accepted_and_not_truncated(client: TestClient) -> None:
    long_password = "p" * 64 + "-tail-" + "q" * 100
    _register(client, password=long_password)
    login(client, "new.user", long_password)
    truncated = client.post(
        "/api/v1/auth/login", json={"login": "new.user", "password": long_password[:72]}
    )
    assert truncated.status_code == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("username", "ab"),
        ("username", "has space"),
        ("username", "x" * 101),
        ("username", "semi;colon"),
        ("password", "short"),
        ("phone", "call me maybe"),
        ("first_name", "x" * 101),
    ],
)
def test_invalid_fields_are_422_and_create_nothing(
    client: TestClient, db: Session, field: str, value: str
) -> None:
    body = {"email": "ok@example.com", "username": "okname", "password": "long-enough-1"}
    body[field] = value
    response = client.post(REGISTER, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/validation"
    assert field in {e["field"] for e in response.json()["errors"]}
    assert db.scalar(select(User).where(User.username == "okname")) is None


@pytest.mark.parametrize("extra", [{"role": "admin"}, {"balance": "100"}, {"email_verified": True}])
def test_registration_cannot_set_privileged_fields(
    client: TestClient, db: Session, extra: dict[str, object]
) -> None:
    body = {"email": "ok@example.com", "username": "okname", "password": "long-enough-1", **extra}
    response = client.post(REGISTER, json=body)
    assert response.status_code == 422
    assert db.scalar(select(User).where(User.username == "okname")) is None


def test_duplicates_are_409_case_insensitively(client: TestClient, db: Session) -> None:
    make_user(db, email="taken@example.com", username="Taken")
    by_email = client.post(
        REGISTER, json={"email": "TAKEN@example.com", "username": "fresh", "password": "x" * 12}
    )
    assert by_email.status_code == 409
    assert by_email.json()["errors"] == [{"field": "email", "message": "already registered"}]
    by_username = client.post(
        REGISTER, json={"email": "fresh@example.com", "username": "taken", "password": "x" * 12}
    )
    assert by_username.status_code == 409
    assert by_username.json()["errors"][0]["field"] == "username"


def test_registration_can_be_switched_off(client: TestClient, db: Session) -> None:
    db.execute(
        update(Setting).where(Setting.key == "auth.registration_enabled").values(value="false")
    )
    db.flush()
    response = client.post(
        REGISTER, json={"email": "ok@example.com", "username": "okname", "password": "x" * 12}
    )
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/registration-disabled"
    assert db.scalar(select(User).where(User.username == "okname")) is None


def test_expired_verification_token_is_refused(
    client: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    _register(client)
    job_runner.run()
    token = mailbox.last_token("new.user@example.com")
    db.execute(
        update(EmailVerification).values(
            expires_at=EmailVerification.expires_at - timedelta(hours=25)
        )
    )
    db.flush()
    response = client.post(VERIFY, json={"token": token})
    assert response.status_code == 400
    assert db.scalar(select(User.email_verified).where(User.username == "new.user")) is False


@pytest.mark.parametrize("token", ["A" * 43, "not-a-real-token-at-all", "x" * 16])
def test_tampered_verification_token_is_refused(client: TestClient, token: str) -> None:
    response = client.post(VERIFY, json={"token": token})
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/invalid-token"


def test_resend_answers_the_same_for_known_and_unknown_emails(
    client: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    make_user(db, email="pending@example.com", email_verified=False)
    make_user(db, email="done@example.com", email_verified=True)
    answers = [
        client.post(RESEND, json={"email": address})
        for address in ("pending@example.com", "done@example.com", "nobody@example.com")
    ]
    assert {(r.status_code, r.text) for r in answers} == {(202, '{"status":"accepted"}')}
    job_runner.run()
    assert [m["To"] for m in mailbox.messages()] == ["pending@example.com"]
    # The new link works.
    token = mailbox.last_token("pending@example.com")
    assert client.post(VERIFY, json={"token": token}).status_code == 200
