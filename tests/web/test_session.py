"""Panel sessions and CSRF: the cookie maps to the server-side login, forms need their token."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.types import Message

from tests.factories.accounts import PASSWORD, make_user
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts.models import RefreshToken
from vmcloud.web.security import CSP
from vmcloud.web.session import SESSION_COOKIE


def test_login_sets_an_opaque_host_cookie_mapped_to_a_login(panel: TestClient, db: Session) -> None:
    user = make_user(db)
    token = csrf_of(panel.get("/login").text)
    answer = panel.post(
        "/login", data={"login": user.email, "password": PASSWORD, "csrftoken": token}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/instances"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    for attribute in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
        assert attribute.lower() in cookie.lower()
    assert "domain=" not in cookie.lower()
    logins = db.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id)).all()
    assert len(logins) == 1 and logins[0].revoked_at is None


def test_wrong_password_shows_the_problem_on_the_form(panel: TestClient, db: Session) -> None:
    user = make_user(db)
    token = csrf_of(panel.get("/login").text)
    answer = panel.post(
        "/login", data={"login": user.email, "password": "nope" * 3, "csrftoken": token}
    )
    assert answer.status_code == 401
    assert "text/html" in answer.headers["content-type"]
    assert 'role="alert"' in answer.text and SESSION_COOKIE not in answer.headers.get(
        "set-cookie", ""
    )


def test_a_form_post_without_its_token_is_403(panel: TestClient, db: Session) -> None:
    user = make_user(db)
    log_in(panel, user.email, PASSWORD)
    assert panel.post("/logout", data={}).status_code == 403
    assert panel.post("/logout", data={"csrftoken": "forged.token"}).status_code == 403
    # and the session it tried to end is still live
    assert db.scalar(select(RefreshToken.revoked_at).where(RefreshToken.user_id == user.id)) is None


def test_a_login_post_without_cookies_is_still_checked(panel: TestClient) -> None:
    """Login CSRF: a cross-site form cannot log the victim into the attacker's account."""
    panel.cookies.clear()
    answer = panel.post("/login", data={"login": "a", "password": "b" * 12})
    assert answer.status_code == 403


def test_logout_ends_the_login_and_the_cookie(panel: TestClient, db: Session) -> None:
    user = make_user(db)
    log_in(panel, user.email, PASSWORD)
    token = csrf_of(panel.get("/login").text)
    answer = panel.post("/logout", data={"csrftoken": token})
    assert answer.status_code == 303
    assert (
        db.scalar(select(RefreshToken.revoked_at).where(RefreshToken.user_id == user.id))
        is not None
    )


def test_a_session_whose_login_was_revoked_goes_to_login(panel: TestClient, db: Session) -> None:
    user = make_user(db)
    log_in(panel, user.email, PASSWORD)
    user.status = "suspended"
    db.flush()
    answer = panel.post("/logout", data={"csrftoken": csrf_of(panel.get("/login").text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"


def test_pages_carry_the_csp_and_the_api_does_not(panel: TestClient) -> None:
    page = panel.get("/login")
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "same-origin"
    api = panel.get("/api/v1/plans")
    assert "content-security-policy" not in api.headers


def test_malformed_form_bodies_are_400_not_500(panel: TestClient) -> None:
    panel.get("/login")
    bad_utf8 = panel.post(
        "/login",
        content=b"login=\xff\xfe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert bad_utf8.status_code == 400
    no_boundary = panel.post(
        "/login", content=b"x", headers={"content-type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 415
    token = csrf_of(panel.get("/login").text)
    multipart = panel.post(
        "/login", data={"csrftoken": token, "login": "a"}, files={"f": ("a.txt", b"x")}
    )
    assert multipart.status_code == 415


def test_a_cookie_header_that_is_not_utf8_is_400(app: FastAPI) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "path": "/login", "raw_path": b"/login",
        "query_string": b"", "headers": [(b"host", b"testserver"), (b"cookie", b"a=\xff")],
        "scheme": "https", "server": ("testserver", 443), "client": ("198.51.100.9", 1),
        "http_version": "1.1", "root_path": "", "state": {}, "app": app,
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 400


def test_panel_requests_keep_their_route_label(panel: TestClient) -> None:
    """The CSRF layer passes a copy of the request scope on: the route the router matched must
    still reach the access log and the metrics."""
    panel.get("/login")
    panel.get("/healthz")
    metrics = panel.get("/metrics").text
    assert 'route="/login",status="200"' in metrics
    assert 'route="/healthz",status="200"' in metrics
