"""TOTP two-factor authentication, checked against an independent implementation (oathtool)."""

from __future__ import annotations

import shutil
import subprocess
import time
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.accounts.models import RecoveryCode, User
from vmcloud.audit.models import AuditLog

SETUP = "/api/v1/me/2fa/setup"
ENABLE = "/api/v1/me/2fa/enable"
DISABLE = "/api/v1/me/2fa/disable"
LOGIN = "/api/v1/auth/login"


def oathtool(secret: str, at: float | None = None) -> str:
    """A code from Debian's oathtool, which shares no code with the platform."""
    assert shutil.which("oathtool"), "oathtool is installed by ./test (scripts/bootstrap.sh)"
    args = ["oathtool", "--totp", "-b", secret]
    if at is not None:
        args.insert(2, f"--now=@{int(at)}")
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def _code_for_step(secret: str, step: int) -> str:
    return oathtool(secret, at=step * 30 + 1)


def _now_step() -> int:
    return int(time.time() // 30)


@pytest.fixture
def user(db: Session) -> User:
    return make_user(db, username="rae", email="rae@example.com")


@pytest.fixture
def auth(client: TestClient, user: User) -> dict[str, str]:
    return bearer(login(client, "rae", PASSWORD))


def _enable(client: TestClient, auth: dict[str, str]) -> tuple[str, list[str]]:
    setup = client.post(SETUP, headers=auth).json()
    codes = client.post(ENABLE, json={"code": oathtool(setup["secret"])}, headers=auth)
    assert codes.status_code == 200, codes.text
    return setup["secret"], codes.json()["recovery_codes"]


def test_setup_gives_a_secret_and_an_otpauth_uri(
    client: TestClient, db: Session, user: User, auth: dict[str, str]
) -> None:
    setup = client.post(SETUP, headers=auth).json()
    uri = urlparse(setup["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    query = parse_qs(uri.query)
    assert query["secret"] == [setup["secret"]]
    assert query["issuer"] == ["VMCloud"]
    db.refresh(user)
    assert user.two_factor_enabled is False  # not yet enforced
    assert user.two_factor_secret and setup["secret"] not in user.two_factor_secret  # encrypted
    login(client, "rae", PASSWORD)  # login still needs no code


def test_enable_with_an_oathtool_code_then_login_needs_a_code(
    client: TestClient, db: Session, user: User, auth: dict[str, str]
) -> None:
    secret, recovery = _enable(client, auth)
    assert len(recovery) == 10 and len(set(recovery)) == 10
    stored = db.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)).all()
    assert len(stored) == 10 and not set(recovery) & set(stored)

    missing = client.post(LOGIN, json={"login": "rae", "password": PASSWORD})
    assert missing.status_code == 401
    assert missing.json()["type"] == "/problems/two-factor-required"
    wrong = client.post(LOGIN, json={"login": "rae", "password": PASSWORD, "totp_code": "000000"})
    assert wrong.status_code == 401
    assert wrong.json()["type"] == "/problems/two-factor-required"

    # The code used to enable is spent; the next step's code (from oathtool) logs in.
    next_code = _code_for_step(secret, _now_step() + 1)
    tokens = login(client, "rae", PASSWORD, totp_code=next_code)
    assert tokens["access_token"]
    # A wrong password with a right code is still just wrong credentials.
    bad = client.post(
        LOGIN, json={"login": "rae", "password": "nope nope nope", "totp_code": next_code}
    )
    assert bad.json()["type"] == "/problems/invalid-credentials"
    actions = set(db.scalars(select(AuditLog.action).where(AuditLog.user_id == user.id)))
    assert {"user.2fa_enable", "user.login", "user.login_failed"} <= actions


def test_a_code_is_accepted_once(client: TestClient, user: User, auth: dict[str, str]) -> None:
    secret, _ = _enable(client, auth)
    code = _code_for_step(secret, _now_step() + 1)
    login(client, "rae", PASSWORD, totp_code=code)
    replay = client.post(LOGIN, json={"login": "rae", "password": PASSWORD, "totp_code": code})
    assert replay.status_code == 401
    # An older code (the current step's) is refused too once a newer one was used.
    older = _code_for_step(secret, _now_step())
    stale = client.post(LOGIN, json={"login": "rae", "password": PASSWORD, "totp_code": older})
    assert stale.status_code == 401


def test_codes_outside_the_window_are_refused(
    client: TestClient, user: User, auth: dict[str, str]
) -> None:
    secret, _ = _enable(client, auth)
    far = _code_for_step(secret, _now_step() + 5)
    response = client.post(LOGIN, json={"login": "rae", "password": PASSWORD, "totp_code": far})
    assert response.status_code == 401
    assert pyotp.TOTP(secret).at(time.time() + 150) == far  # the two implementations agree


def test_recovery_codes_work_once(client: TestClient, user: User, auth: dict[str, str]) -> None:
    _, recovery = _enable(client, auth)
    code = recovery[3].upper()  # case and dashes do not matter
    login(client, "rae", PASSWORD, totp_code=code)
    again = client.post(LOGIN, json={"login": "rae", "password": PASSWORD, "totp_code": code})
    assert again.status_code == 401
    login(client, "rae", PASSWORD, totp_code=recovery[4].replace("-", ""))


def test_enable_refuses_a_wrong_code_and_stays_off(
    client: TestClient, db: Session, user: User, auth: dict[str, str]
) -> None:
    client.post(SETUP, headers=auth)
    response = client.post(ENABLE, json={"code": "123456"}, headers=auth)
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/invalid-two-factor-code"
    db.refresh(user)
    assert user.two_factor_enabled is False


def test_enable_without_setup_is_409(client: TestClient, auth: dict[str, str]) -> None:
    assert client.post(ENABLE, json={"code": "123456"}, headers=auth).status_code == 409


def test_setup_while_enabled_is_409(client: TestClient, auth: dict[str, str]) -> None:
    _enable(client, auth)
    assert client.post(SETUP, headers=auth).status_code == 409


def test_disable_needs_password_and_code(
    client: TestClient, db: Session, user: User, auth: dict[str, str]
) -> None:
    secret, _ = _enable(client, auth)
    code = _code_for_step(secret, _now_step() + 1)
    wrong_password = client.post(
        DISABLE, json={"password": "not my password", "code": code}, headers=auth
    )
    assert wrong_password.status_code == 403
    wrong_code = client.post(DISABLE, json={"password": PASSWORD, "code": "000000"}, headers=auth)
    assert wrong_code.status_code == 403
    db.refresh(user)
    assert user.two_factor_enabled is True

    ok = client.post(DISABLE, json={"password": PASSWORD, "code": code}, headers=auth)
    assert ok.status_code == 204
    db.refresh(user)
    assert (user.two_factor_enabled, user.two_factor_secret) == (False, None)
    assert db.scalar(select(RecoveryCode).where(RecoveryCode.user_id == user.id)) is None
    login(client, "rae", PASSWORD)  # no code needed any more
    assert db.scalar(select(AuditLog).where(AuditLog.action == "user.2fa_disable")) is not None


def test_password_reset_does_not_bypass_two_factor(
    client: TestClient,
    user: User,
    auth: dict[str, str],
    job_runner,
    mailbox,  # type: ignore[no-untyped-def]
) -> None:
    _enable(client, auth)
    client.post("/api/v1/auth/password-reset/request", json={"email": "rae@example.com"})
    job_runner.run()
    token = mailbox.last_token("rae@example.com")
    new = "after the reset, still 2fa"
    response = client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": new}
    )
    assert response.status_code == 204
    after = client.post(LOGIN, json={"login": "rae", "password": new})
    assert after.status_code == 401
    assert after.json()["type"] == "/problems/two-factor-required"


def test_secrets_never_reach_the_audit_trail(
    client: TestClient, db: Session, user: User, auth: dict[str, str]
) -> None:
    secret, recovery = _enable(client, auth)
    dump = " ".join(
        str((r.old_values, r.new_values, r.metadata_json)) for r in db.scalars(select(AuditLog))
    )
    assert secret not in dump
    assert not any(code in dump for code in recovery)
    assert PASSWORD not in dump
