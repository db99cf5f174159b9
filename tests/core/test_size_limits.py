"""Request size limits: a body over its limit is 413 before the application reads it, whether
it declares its length or streams it in chunks; a ticket message with files may be as large as
the site's attachment settings allow."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import Receive, Scope, Send

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.app import create_app
from vmcloud.config import Settings
from vmcloud.core.size_limits import RequestSizeLimitMiddleware
from vmcloud.site_settings import service as site_settings

LIMIT = 64 * 1024
LOGIN = "/api/v1/auth/login"


class Echo:
    """An application that reads the whole body and says how much it read."""

    def __init__(self) -> None:
        self.read = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        more = True
        while more:
            message = await receive()
            self.read += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(self.read).encode()})


def _chunks(size: int, chunk: int = 4096) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        yield b"x" * min(chunk, size - sent)
        sent += chunk


def _limited(app: Echo, body: int, header: int = 16 * 1024) -> TestClient:
    # No lifespan (the echo application has none): the client is not entered as a context.
    limited = RequestSizeLimitMiddleware(app, max_body_bytes=body, max_header_bytes=header)
    return TestClient(limited)


def test_a_declared_length_over_the_limit_is_413_and_nothing_is_read() -> None:
    echo = Echo()
    client = _limited(echo, body=100)
    response = client.post("/", content=b"x" * 101)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/payload-too-large"
    assert echo.read == 0
    assert client.post("/", content=b"x" * 100).text == "100"


def test_a_streamed_body_is_counted_as_it_arrives() -> None:
    echo = Echo()
    client = _limited(echo, body=10_000)
    response = client.post("/", content=_chunks(50_000, 1000))
    assert response.status_code == 413
    assert response.json()["type"] == "/problems/payload-too-large"
    assert echo.read <= 10_000  # it stopped reading at the limit
    assert client.post("/", content=_chunks(9_000, 1000)).text == "9000"


def test_headers_over_the_limit_are_431() -> None:
    echo = Echo()
    client = _limited(echo, body=100, header=4096)
    response = client.get("/", headers={"x-filler": "a" * 5000})
    assert response.status_code == 431
    assert response.json()["type"] == "/problems/header-fields-too-large"
    assert client.get("/", headers={"x-filler": "a" * 3000}).status_code == 200
    assert client.get("/?" + "q" * 5000).status_code == 431


def test_the_default_limit_is_two_mebibytes() -> None:
    assert Settings().max_request_body_bytes == 2 * 1024 * 1024
    assert Settings().max_request_header_bytes == 16 * 1024


@pytest.fixture
def small(
    app_settings: Settings, engine: Engine, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    settings = app_settings.model_copy(update={"max_request_body_bytes": LIMIT})
    app = create_app(settings, engine=engine, session_factory=session_factory)
    with TestClient(app, client=("198.51.100.9", 50000)) as client:
        yield client


def test_an_anonymous_json_body_over_the_limit_is_413(small: TestClient) -> None:
    big = b'{"login": "a", "password": "' + b"x" * LIMIT + b'"}'
    response = small.post(LOGIN, content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert "x-request-id" in response.headers
    streamed = small.post(
        LOGIN, content=_chunks(LIMIT * 4), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    # Within the limit, the route answers as usual.
    assert small.post(LOGIN, json={"login": "a", "password": "wrong!"}).status_code == 401


PNG = b"\x89PNG\r\n\x1a\n"


def _multipart_file(size: int) -> Iterator[bytes]:
    """A well-formed multipart body with one file of ``size`` bytes, streamed (no length)."""
    yield (
        b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + PNG
    )
    yield from _chunks(size, 64 * 1024)
    yield b"\r\n--xyz--\r\n"


def test_a_ticket_message_may_carry_files_up_to_the_attachment_limit(
    small: TestClient, db: Session
) -> None:
    site_settings.update_setting(db=db, key="support.attachment_max_bytes", value=256 * 1024)
    site_settings.update_setting(db=db, key="support.attachment_max_count", value=2)
    db.commit()
    auth = bearer(login(small, make_user(db).username, PASSWORD))
    opened = small.post(
        "/api/v1/tickets", json={"subject": "Logs", "description": "Attached."}, headers=auth
    )
    assert opened.status_code == 201, opened.text
    picture = PNG + b"\x00" * (200 * 1024)  # larger than the JSON limit, within the files'
    url = f"/api/v1/tickets/{opened.json()['id']}/messages"
    files = [("files", ("shot.png", picture, "image/png"))]
    posted = small.post(url, data={"message": "see"}, files=files, headers=auth)
    assert posted.status_code == 201, posted.text
    # The same body anywhere else is held to the general limit.
    elsewhere = small.post("/api/v1/tickets", data={"message": "see"}, files=files, headers=auth)
    assert elsewhere.status_code == 413
    # And a message larger than its files may be is refused too, even streamed.
    huge = small.post(
        url,
        content=_multipart_file(8 * 1024 * 1024),
        headers=auth | {"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert huge.status_code == 413


def test_a_413_is_refused_before_the_route_runs(small: TestClient) -> None:
    """Even on a route that needs a login: nothing is parsed or looked up for an oversized body."""
    response = small.post("/api/v1/tickets", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
