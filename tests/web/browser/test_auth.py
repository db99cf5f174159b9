"""Pages 1 and 6 in a browser: log in (with 2FA, JS off, rate limited), sign up → mail →
verify → log in, forgot password, registration closed, and a cross-site form post."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.helpers import (
    client_address,
    login,
    make_customer,
    urlpath,
    wait_for_token,
)
from tests.web.browser.server import LiveServer
from vmcloud.accounts import sessions
from vmcloud.core import clock, ratelimit
from vmcloud.site_settings import service as site_settings
from vmcloud.web.session import SESSION_COOKIE


def _to_2fa(page: Page, live: LiveServer, username: str, password: str) -> None:
    page.goto(f"{live.url}/login")
    page.locator('input[name="login"]').fill(username)
    page.locator('input[name="password"]').fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(live.url)}/login/2fa"))


def test_a_2fa_user_logs_in_after_a_wrong_code_and_lands_on_instances(
    page: Page, live_server: LiveServer
) -> None:
    user = make_customer(live_server, two_factor=True)
    _to_2fa(page, live_server, user.username, user.password)
    page.locator('input[name="code"]').fill("000000")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("incorrect or was already used")
    page.locator('input[name="code"]').fill(user.totp_code())
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}/instances")


def test_login_with_javascript_off_in_both_steps(
    new_panel_context: PanelContexts, live_server: LiveServer
) -> None:
    user = make_customer(live_server, two_factor=True)
    page = new_panel_context(java_script_enabled=False).new_page()
    login(page, live_server, user, remember=False)
    assert any(c["name"] == SESSION_COOKIE for c in page.context.cookies())


def test_the_login_rate_limit_shows_retry_after(
    page: Page, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counters are per fixed window: hold the limiter's clock (the server runs in this
    # process) mid-window, so the attempts cannot straddle a boundary.
    held = clock.utcnow().replace(minute=30, second=30, microsecond=0)
    monkeypatch.setattr(ratelimit, "utcnow", lambda: held)
    user = make_customer(live_server)
    page.goto(f"{live_server.url}/login")
    for _ in range(11):
        page.locator('input[name="login"]').fill(user.username)
        page.locator('input[name="password"]').fill("not the password")
        with page.expect_response(lambda r: r.request.method == "POST"):
            page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile(r"try again in \d+ s"))


def test_sign_up_then_the_mail_then_verify_then_log_in(page: Page, live_server: LiveServer) -> None:
    name = f"signup{int(time.time() * 1000) % 10**9}"
    email = f"{name}@example.com"
    page.goto(f"{live_server.url}/login")
    page.get_by_role("link", name="Create an account").click()
    page.locator('input[name="email"]').fill(email)
    page.locator('input[name="username"]').fill(name)
    page.locator('input[name="password"]').fill("a long enough password")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    token = wait_for_token(live_server, email)
    page.goto(f"{live_server.url}/verify-email?token={token}")
    page.get_by_role("button", name="Confirm my email address").click()
    expect(page).to_have_url(f"{live_server.url}/login")
    expect(page.get_by_role("status")).to_contain_text("confirmed")
    page.locator('input[name="login"]').fill(email)
    page.locator('input[name="password"]').fill("a long enough password")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}/instances")


def test_forgot_password_answers_the_same_for_unknown_addresses(
    page: Page, live_server: LiveServer
) -> None:
    user = make_customer(live_server)
    answers = []
    for email in (user.email, "nobody-at-all@example.com"):
        page.goto(f"{live_server.url}/login")
        page.get_by_role("link", name="Forgot your password?").click()
        page.locator('input[name="email"]').fill(email)
        page.get_by_role("button", name="Send the link").click()
        expect(page).to_have_url(f"{live_server.url}/login")
        status = page.locator(".flash").inner_text()
        answers.append(status.replace(email, "<email>"))
    assert answers[0] == answers[1] and "we have sent it a link" in answers[0]


@contextmanager
def _registration_closed(live: LiveServer) -> Iterator[None]:
    with live.transaction() as db:
        site_settings.update_setting(db=db, key="auth.registration_enabled", value=False)
    try:
        yield
    finally:
        with live.transaction() as db:
            site_settings.update_setting(db=db, key="auth.registration_enabled", value=True)


def test_registration_closed_shows_its_page_and_no_link(
    page: Page, live_server: LiveServer
) -> None:
    with _registration_closed(live_server):
        page.goto(f"{live_server.url}/login")
        expect(page.get_by_role("link", name="Create an account")).to_have_count(0)
        page.goto(f"{live_server.url}/signup")
        expect(page.get_by_role("heading", name="Registration is closed")).to_be_visible()
        expect(page.locator('input[name="password"]')).to_have_count(0)


# -- a form on another site ------------------------------------------------------------------


@contextmanager
def _other_site(html: str) -> Iterator[str]:
    """``html`` served at ``http://localhost:<port>/``: another site than 127.0.0.1."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_cross_site_form_post_carries_no_session(
    new_context: Any, live_server: LiveServer
) -> None:
    """SameSite=Lax: a form another site submits to the panel arrives without the session
    cookie, so it can change nothing (here: it tries to log the user out)."""
    # Not a guarded context: this test visits another origin on purpose.
    context = new_context(
        base_url=live_server.url, extra_http_headers={"X-Forwarded-For": client_address()}
    )
    page = context.new_page()
    user = make_customer(live_server)
    login(page, live_server, user, remember=False)
    attack = (
        f'<form method="post" action="{live_server.url}/logout">'
        '<input type="hidden" name="x" value="1"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    posts: list[Request] = []
    page.on(
        "request",
        lambda r: posts.append(r) if r.method == "POST" and urlpath(r.url) == "/logout" else None,
    )
    with _other_site(attack) as url:
        page.goto(url)
        expect(page).not_to_have_url(url)  # the form went to the panel
        page.wait_for_load_state()
    assert posts, "the form was not submitted"
    assert SESSION_COOKIE not in (posts[0].all_headers().get("cookie") or "")
    # and the login is still live
    page.goto(f"{live_server.url}/account")
    expect(page).to_have_url(f"{live_server.url}/account")
    with live_server.transaction() as db:
        assert sessions.find_live_login(db=db, raw=_session_secret(page)) is not None


def _session_secret(page: Page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
