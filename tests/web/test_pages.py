"""The pages account emails link to: opening one changes nothing; the token is embedded safely."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.helpers import JobRunner, Mailbox
from vmcloud.accounts.models import User


def test_opening_the_verification_link_changes_nothing(
    client: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    client.post(
        "/api/v1/auth/register",
        json={"email": "v@example.com", "username": "vpage", "password": "long enough pw"},
    )
    job_runner.run()
    token = mailbox.last_token("v@example.com")
    page = client.get("/verify-email", params={"token": token})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert json.dumps(token) in page.text  # URL-safe tokens need no escaping
    assert "/api/v1/auth/verify-email" in page.text
    assert db.scalar(select(User.email_verified).where(User.username == "vpage")) is False


def test_a_hostile_token_cannot_inject_markup(client: TestClient) -> None:
    page = client.get("/reset-password", params={"token": "</script><script>alert(1)</script>"})
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "/api/v1/auth/password-reset/confirm" in page.text
