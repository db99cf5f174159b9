"""Log in with two-factor authentication, sign up, confirm the email address, reset a
forgotten password: the panel pages for them, through the real app."""

from __future__ import annotations

import pyotp
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import JobRunner, Mailbox
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts import totp
from vmcloud.accounts.models import RecoveryCode, RefreshToken, User
from vmcloud.config import Settings
from vmcloud.core import clock, ratelimit
from vmcloud.site_settings.models import Setting
from vmcloud.web.customer.auth import PENDING_COOKIE
from vmcloud.web.session import SESSION_COOKIE


@pytest.fixture
def held_limiter_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate-limit counters are per fixed window: hold the limiter's clock mid-window so a run
    that straddles a boundary cannot see a count start again."""
    held = clock.utcnow().replace(minute=30, second=30, microsecond=0)
    monkeypatch.setattr(ratelimit, "utcnow", lambda: held)


def _two_factor_user(db: Session, settings: Settings) -> tuple[User, str]:
    user = make_user(db)
    secret = totp.new_secret()
    user.two_factor_secret = totp.encrypt(secret, settings.fernet_key)
    user.two_factor_enabled = True
    db.flush()
    return user, secret


def _post(panel: TestClient, path: str, page: str, data: dict[str, str]) -> Response:
    return panel.post(path, data={**data, "csrftoken": csrf_of(panel.get(page).text)})


def _password_step(panel: TestClient, user: User, next: str = "") -> str:
    token = csrf_of(panel.get("/login").text)
    answer = panel.post(
        "/login",
        data={"login": user.email, "password": PASSWORD, "next": next, "csrftoken": token},
    )
    assert answer.status_code == 303, answer.text
    assert panel.cookies.get(SESSION_COOKIE) is None
    return str(answer.headers["location"])


def _code_step(panel: TestClient, code: str, next: str = "") -> Response:
    token = csrf_of(panel.get("/login/2fa").text)
    return panel.post("/login/2fa", data={"code": code, "next": next, "csrftoken": token})


def test_a_2fa_account_logs_in_in_two_steps_and_keeps_next(
    panel: TestClient, db: Session, app_settings: Settings
) -> None:
    user, secret = _two_factor_user(db, app_settings)
    location = _password_step(panel, user, next="/billing")
    assert location == "/login/2fa?next=/billing"
    page = panel.get(location)
    assert page.status_code == 200 and 'value="/billing"' in page.text
    answer = _code_step(panel, pyotp.TOTP(secret).now(), next="/billing")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/billing"
    assert panel.cookies.get(SESSION_COOKIE)
    assert db.scalar(select(RefreshToken.id).where(RefreshToken.user_id == user.id))


def test_the_pending_cookie_is_short_lived_host_only_and_httponly(
    panel: TestClient, db: Session, app_settings: Settings
) -> None:
    user, _ = _two_factor_user(db, app_settings)
    token = csrf_of(panel.get("/login").text)
    answer = panel.post(
        "/login", data={"login": user.email, "password": PASSWORD, "csrftoken": token}
    )
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(PENDING_COOKIE))
    for attribute in ("HttpOnly", "Secure", "SameSite=lax", "Path=/", "Max-Age=300"):
        assert attribute.lower() in cookie.lower()
    assert "domain=" not in cookie.lower()


def test_a_wrong_code_shows_the_message_and_a_recovery_code_works(
    panel: TestClient, db: Session, app_settings: Settings
) -> None:
    user, _ = _two_factor_user(db, app_settings)
    code = totp.new_recovery_codes()[0]
    db.add(RecoveryCode(user_id=user.id, code_hash=totp.hash_recovery_code(code)))
    db.flush()
    _password_step(panel, user)
    wrong = _code_step(panel, "000000")
    assert wrong.status_code == 401
    assert "incorrect or was already used" in wrong.text
    assert panel.cookies.get(SESSION_COOKIE) is None
    right = _code_step(panel, code)
    assert right.status_code == 303
    assert right.headers["location"] == "/instances"


def test_the_second_step_needs_the_password_step_first(
    panel: TestClient, db: Session, app_settings: Settings
) -> None:
    page = panel.get("/login/2fa")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    token = csrf_of(panel.get("/login").text)
    panel.cookies.set(PENDING_COOKIE, "forged.value", domain="testserver")
    answer = panel.post("/login/2fa", data={"code": "123456", "csrftoken": token})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_a_password_change_ends_the_half_done_login(
    panel: TestClient, db: Session, app_settings: Settings
) -> None:
    user, secret = _two_factor_user(db, app_settings)
    _password_step(panel, user)
    user.password_hash = user.password_hash + "changed"
    db.flush()
    answer = _code_step(panel, pyotp.TOTP(secret).now())
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?")
    assert panel.cookies.get(SESSION_COOKIE) is None


@pytest.mark.usefixtures("held_limiter_clock")
def test_the_login_rate_limit_says_when_to_try_again(panel: TestClient, db: Session) -> None:
    user = make_user(db)
    token = csrf_of(panel.get("/login").text)
    answers = [
        panel.post(
            "/login", data={"login": user.email, "password": "wrong" * 3, "csrftoken": token}
        )
        for _ in range(11)
    ]
    last = answers[-1]
    assert last.status_code == 429
    wait = last.headers["retry-after"]
    assert int(wait) > 0
    assert f"try again in {wait} s" in last.text


@pytest.mark.parametrize("enabled", [True, False])
def test_the_login_page_links_to_sign_up_only_when_open(
    panel: TestClient, db: Session, enabled: bool
) -> None:
    _registration(db, enabled)
    page = panel.get("/login")
    assert ('href="/signup"' in page.text) is enabled
    signup = panel.get("/signup")
    assert signup.status_code == (200 if enabled else 403)
    assert ("Registration is closed" in signup.text) is not enabled


def _registration(db: Session, enabled: bool) -> None:
    db.execute(
        update(Setting)
        .where(Setting.key == "auth.registration_enabled")
        .values(value="true" if enabled else "false")
    )
    db.flush()


# -- sign up, verify, reset ----------------------------------------------------------------


def test_sign_up_then_verify_then_log_in(
    panel: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    answer = _post(
        panel,
        "/signup",
        "/signup",
        {"email": "new@example.com", "username": "newbie", "password": "long enough pw"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signup/check-email"
    assert "Check your mail" in panel.get("/signup/check-email").text
    job_runner.run()
    token = mailbox.last_token("new@example.com")
    page = panel.get("/verify-email", params={"token": token})
    assert page.status_code == 200 and f'value="{token}"' in page.text
    # opening the link changed nothing (mail scanners open links too)
    assert db.scalar(select(User.email_verified).where(User.username == "newbie")) is False
    confirm = panel.post("/verify-email", data={"token": token, "csrftoken": csrf_of(page.text)})
    assert confirm.status_code == 303 and confirm.headers["location"] == "/login"
    assert db.scalar(select(User.email_verified).where(User.username == "newbie")) is True
    log_in(panel, "newbie", "long enough pw")
    # a used link says so
    again = panel.post("/verify-email", data={"token": token, "csrftoken": csrf_of(page.text)})
    assert again.status_code == 400 and "invalid, used or expired" in again.text


def test_sign_up_shows_field_errors_and_keeps_the_input(panel: TestClient, db: Session) -> None:
    taken = make_user(db)
    answer = _post(
        panel,
        "/signup",
        "/signup",
        {"email": taken.email, "username": "someone", "password": "long enough pw"},
    )
    assert answer.status_code == 409
    assert "already registered" in answer.text
    assert 'value="someone"' in answer.text
    short = _post(
        panel, "/signup", "/signup", {"email": "a@example.com", "username": "ab", "password": "x"}
    )
    assert short.status_code == 422
    assert 'aria-invalid="true"' in short.text


def test_sign_up_when_closed_shows_the_closed_page_and_creates_nothing(
    panel: TestClient, db: Session
) -> None:
    _registration(db, False)
    token = csrf_of(panel.get("/login").text)
    answer = panel.post(
        "/signup",
        data={
            "email": "c@example.com",
            "username": "closed",
            "password": "long enough pw",
            "csrftoken": token,
        },
    )
    assert answer.status_code == 403 and "Registration is closed" in answer.text
    assert db.scalar(select(User).where(User.username == "closed")) is None


def test_a_hostile_token_is_embedded_safely(panel: TestClient) -> None:
    hostile = '"><script>alert(1)</script>'
    for path in ("/verify-email", "/reset-password"):
        page = panel.get(path, params={"token": hostile})
        assert page.status_code == 200
        assert "<script>alert(1)" not in page.text
        assert "&#34;&gt;&lt;script&gt;" in page.text or "&quot;&gt;&lt;script&gt;" in page.text


def test_forgot_password_answers_the_same_for_unknown_addresses(
    panel: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    user = make_user(db)
    known = _post(panel, "/forgot-password", "/forgot-password", {"email": user.email})
    unknown = _post(panel, "/forgot-password", "/forgot-password", {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 303
    assert known.headers["location"] == unknown.headers["location"]
    job_runner.run()
    assert mailbox.to(user.email) and not mailbox.to("nobody@example.com")


def test_reset_password_sets_it_and_ends_every_login(
    panel: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    user = make_user(db)
    log_in(panel, user.email, PASSWORD)
    _post(panel, "/forgot-password", "/forgot-password", {"email": user.email})
    job_runner.run()
    token = mailbox.last_token(user.email)
    page = panel.get("/reset-password", params={"token": token})
    short = panel.post(
        "/reset-password",
        data={"token": token, "new_password": "short", "csrftoken": csrf_of(page.text)},
    )
    assert short.status_code == 422 and 'aria-invalid="true"' in short.text
    answer = panel.post(
        "/reset-password",
        data={"token": token, "new_password": "a brand new one", "csrftoken": csrf_of(page.text)},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert panel.get("/account").status_code == 303  # the old session ended
    log_in(panel, user.email, "a brand new one")
    bad = panel.post(
        "/reset-password",
        data={
            "token": "x" * 40,
            "new_password": "another new one",
            "csrftoken": csrf_of(page.text),
        },
    )
    assert bad.status_code == 400 and "invalid, used or expired" in bad.text


def test_resend_verification_for_the_logged_in_user(
    panel: TestClient, db: Session, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    user = make_user(db, email_verified=False)
    log_in(panel, user.email, PASSWORD)
    page = panel.get("/account")
    assert "Send a new link" in page.text
    answer = panel.post("/verify-email/resend", data={"csrftoken": csrf_of(page.text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/account"
    back = panel.post(
        "/verify-email/resend", data={"next": "/instances/new", "csrftoken": csrf_of(page.text)}
    )
    assert back.headers["location"] == "/instances/new"
    job_runner.run()
    assert mailbox.to(user.email)


def test_a_post_without_the_session_cookie_does_not_clear_it(
    panel: TestClient, db: Session
) -> None:
    """A form another site posts arrives without the cookie (SameSite=Lax): the answer must
    not delete the browser's session cookie, or any site could log the user out."""
    answer = panel.post("/logout", data={})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    user = make_user(db)
    log_in(panel, user.email, PASSWORD)
    user.status = "suspended"
    db.flush()
    ended = panel.get("/account")  # a cookie the request carried, now dead, is cleared
    assert ended.status_code == 303 and SESSION_COOKIE in ended.headers.get("set-cookie", "")


@pytest.mark.usefixtures("held_limiter_clock")
def test_an_address_refused_before_the_form_still_says_when_to_try_again(
    panel: TestClient, db: Session
) -> None:
    """Past the per-address limit the login is refused before its route runs: the error page
    says how long to wait too."""
    token = csrf_of(panel.get("/login").text)
    for n in range(31):
        last = panel.post(
            "/login", data={"login": f"nobody{n}", "password": "x" * 12, "csrftoken": token}
        )
    refused = panel.post("/login", data={"login": "x", "password": "x" * 12, "csrftoken": token})
    assert last.status_code == refused.status_code == 429
    wait = refused.headers["retry-after"]
    assert f"try again in {wait} s" in refused.text.lower()
