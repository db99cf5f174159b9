"""The account pages: profile, password, two-factor set-up and removal, sessions."""

from __future__ import annotations

import re
import time

import pyotp
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts.models import RefreshToken
from vmcloud.web.session import SESSION_COOKIE

SEC = "/account/security"
SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')


def _post(panel: TestClient, path: str, data: dict[str, str], page: str = "/account") -> Response:
    return panel.post(path, data={**data, "csrftoken": csrf_of(panel.get(page).text)})


def _second_client(app: FastAPI) -> TestClient:
    return TestClient(
        app, base_url="https://testserver", follow_redirects=False, client=("198.51.100.10", 1)
    )


def test_the_account_pages_need_a_login(panel: TestClient) -> None:
    for path in ("/account", SEC):
        answer = panel.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


def test_profile_saves_the_fields_patch_me_allows(panel: TestClient, db: Session) -> None:
    user = make_user(db)
    log_in(panel, user.email, PASSWORD)
    answer = _post(
        panel, "/account/profile", {"first_name": "Ada", "last_name": "", "phone": "+44 20 7946"}
    )
    assert answer.status_code == 303
    db.refresh(user)
    assert (user.first_name, user.last_name, user.phone) == ("Ada", None, "+44 20 7946")
    bad = _post(panel, "/account/profile", {"first_name": "Ada", "phone": "call me"})
    assert bad.status_code == 422
    assert 'id="e-phone"' in bad.text
    db.refresh(user)
    assert user.phone == "+44 20 7946"
    extra = _post(panel, "/account/profile", {"first_name": "Ada", "role": "admin"})
    assert extra.status_code == 303
    db.refresh(user)
    assert user.role == "customer"


def test_password_change_keeps_this_session_and_ends_the_others(
    panel: TestClient, app: FastAPI, db: Session
) -> None:
    user = make_user(db)
    log_in(panel, user.email, PASSWORD)
    with _second_client(app) as other:
        log_in(other, user.email, PASSWORD)
        wrong = _post(
            panel, "/account/password", {"current_password": "nope", "new_password": "x" * 12}
        )
        assert wrong.status_code == 403
        assert "current password is incorrect" in wrong.text
        answer = _post(
            panel,
            "/account/password",
            {"current_password": PASSWORD, "new_password": "new pass word"},
        )
        assert answer.status_code == 303
        assert panel.get("/account").status_code == 200
        assert other.get("/account").status_code == 303


def test_enable_2fa_shows_the_qr_and_codes_once_then_login_needs_a_code(
    panel: TestClient, app: FastAPI, db: Session
) -> None:
    user = make_user(db)
    log_in(panel, user.email, PASSWORD)
    assert _post(panel, "/account/2fa/setup", {}, page=SEC).status_code == 303
    page = panel.get(SEC)
    assert 'src="data:image/svg+xml' in page.text
    secret = SECRET.search(page.text)
    assert secret, page.text
    wrong = _post(panel, "/account/2fa/enable", {"code": "000000"}, page=SEC)
    assert wrong.status_code == 403
    assert "incorrect" in wrong.text and 'src="data:image/svg+xml' in wrong.text
    code = pyotp.TOTP(secret.group(1)).now()
    shown = _post(panel, "/account/2fa/enable", {"code": code}, page=SEC)
    assert shown.status_code == 200
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", shown.text)
    assert len(codes) == 10 and "data-copy" in shown.text
    after = panel.get(SEC).text
    assert not any(c in after for c in codes) and secret.group(1) not in after
    db.refresh(user)
    assert user.two_factor_enabled is True
    with _second_client(app) as other:
        token = csrf_of(other.get("/login").text)
        answer = other.post(
            "/login", data={"login": user.email, "password": PASSWORD, "csrftoken": token}
        )
        assert answer.headers["location"].startswith("/login/2fa")
        assert other.cookies.get(SESSION_COOKIE) is None


def test_disable_2fa_needs_the_password_and_a_code(panel: TestClient, db: Session) -> None:
    user = make_user(db)
    log_in(panel, user.email, PASSWORD)
    _post(panel, "/account/2fa/setup", {}, page=SEC)
    found = SECRET.search(panel.get(SEC).text)
    assert found
    totp = pyotp.TOTP(found.group(1))
    _post(panel, "/account/2fa/enable", {"code": totp.now()}, page=SEC)
    no_password = _post(
        panel,
        "/account/2fa/disable",
        {"password": "wrong password", "code": "123456"},
        "/account/security",
    )
    assert no_password.status_code == 403
    assert "current password is incorrect" in no_password.text
    no_code = _post(
        panel, "/account/2fa/disable", {"password": PASSWORD, "code": "000000"}, "/account/security"
    )
    assert no_code.status_code == 403
    db.refresh(user)
    assert user.two_factor_enabled is True
    # the code of the enable step was used; the next time step's code is good
    code = totp.at(time.time() + 30)
    answer = _post(
        panel, "/account/2fa/disable", {"password": PASSWORD, "code": code}, "/account/security"
    )
    assert answer.status_code == 303
    db.refresh(user)
    assert user.two_factor_enabled is False


def test_sessions_list_and_logging_out_another_one_kills_its_cookie(
    panel: TestClient, app: FastAPI, db: Session
) -> None:
    user = make_user(db)
    log_in(panel, user.email, PASSWORD)
    with _second_client(app) as other:
        other.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36"
        log_in(other, user.email, PASSWORD)
        page = panel.get(SEC).text
        assert "this device" in page and "Chrome on Linux" in page and "198.51.100.10" in page
        family = db.scalar(
            select(RefreshToken.family_id).where(RefreshToken.ip_address == "198.51.100.10")
        )
        answer = _post(panel, f"/account/sessions/{family}/logout", {}, SEC)
        assert answer.status_code == 303
        assert other.get("/account").status_code == 303
        assert panel.get("/account").status_code == 200


def test_another_users_session_is_404_and_log_out_all_others(
    panel: TestClient, app: FastAPI, db: Session
) -> None:
    user, stranger = make_user(db), make_user(db)
    log_in(panel, user.email, PASSWORD)
    with _second_client(app) as theirs, _second_client(app) as mine:
        log_in(theirs, stranger.email, PASSWORD)
        log_in(mine, user.email, PASSWORD)
        foreign = db.scalar(
            select(RefreshToken.family_id).where(RefreshToken.user_id == stranger.id)
        )
        answer = _post(panel, f"/account/sessions/{foreign}/logout", {}, SEC)
        assert answer.status_code == 404
        garbage = _post(panel, "/account/sessions/not-an-id/logout", {}, SEC)
        assert garbage.status_code == 422
        assert theirs.get("/account").status_code == 200
        others = _post(panel, "/account/sessions/others/logout", {}, SEC)
        assert others.status_code == 303
        assert mine.get("/account").status_code == 303
        assert theirs.get("/account").status_code == 200
        assert panel.get("/account").status_code == 200


def test_a_pending_setup_under_another_key_is_offered_afresh(
    panel: TestClient, db: Session
) -> None:
    """An enrolment started under an encryption key the platform no longer has cannot be
    finished: the security page offers to start again instead of failing."""
    user = make_user(db)
    user.two_factor_secret = Fernet(Fernet.generate_key()).encrypt(b"JBSWY3DPEHPK3PXP").decode()
    db.commit()
    log_in(panel, user.username, PASSWORD)
    page = panel.get("/account/security")
    assert page.status_code == 200
    assert 'action="/account/2fa/setup"' in page.text
