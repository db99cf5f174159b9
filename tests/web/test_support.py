"""The support pages (``/support``, ``/support/new``, ``/support/{id}``) through the real app:
tickets opened and answered with files (multipart, the CSRF token first), the attachment
limits as form messages, internal notes never shown, close and rate once."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from asgi_csrf import DEFAULT_SIGNING_NAMESPACE
from fastapi.testclient import TestClient
from itsdangerous import URLSafeSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.types import Message, Receive, Scope, Send

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.support import make_ticket
from tests.helpers import bearer, login
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts.models import User
from vmcloud.config import Settings
from vmcloud.site_settings import service as site_settings
from vmcloud.support.models import SupportTicket, TicketMessage
from vmcloud.web.security import PanelInputGuard

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
NONCE = re.compile(r'name="nonce" value="([0-9a-f]+)"')
BOUNDARY = "testboundary42"


@pytest.fixture
def customer(db: Session, panel: TestClient) -> User:
    user = make_user(db)
    db.commit()
    log_in(panel, user.username, PASSWORD)
    return user


def _stored(settings: Settings) -> list[Path]:
    root = settings.data_dir / "attachments"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _tickets(db: Session, user: User) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).where(SupportTicket.user_id == user.id)) or 0


def _messages(db: Session, ticket_id: uuid.UUID) -> list[TicketMessage]:
    db.expire_all()
    return list(db.scalars(select(TicketMessage).where(TicketMessage.ticket_id == ticket_id)))


def _multipart(parts: list[tuple[str, Any]]) -> tuple[bytes, dict[str, str]]:
    """A multipart body with its parts in exactly this order (``(name, text)`` or
    ``(name, (filename, bytes, type))``)."""
    body = b""
    for name, value in parts:
        body += f"--{BOUNDARY}\r\n".encode()
        if isinstance(value, tuple):
            filename, data, kind = value
            body += (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {kind}\r\n\r\n"
            ).encode() + data
        else:
            body += f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()
        body += b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def _open(
    panel: TestClient, files: list[Any] | None = None, nonce: str | None = None, **fields: str
) -> Any:
    page = panel.get("/support/new").text
    data = {
        "csrftoken": csrf_of(page),  # first: the guard reads it before any file
        "nonce": nonce or NONCE.search(page).group(1),  # type: ignore[union-attr]
        "subject": "Disk is full",
        "category": "technical",
        "description": "My disk filled up overnight.",
        **fields,
    }
    return panel.post("/support/new", data=data, files=files or [])


def test_open_a_ticket_with_an_attachment_and_read_it_back(
    panel: TestClient, db: Session, customer: User, app_settings: Settings
) -> None:
    assert "No tickets yet" in panel.get("/support").text
    new = panel.get("/support/new").text
    for category in ("general", "billing", "technical", "abuse", "sales"):
        assert f'<option value="{category}"' in new
    assert 'enctype="multipart/form-data"' in new and "Up to 5 files" in new

    opened = _open(panel, files=[("files", ("screen.png", PNG, "image/png"))])
    assert opened.status_code == 303, opened.text
    ticket_id = opened.headers["location"].removeprefix("/support/")
    page = panel.get(f"/support/{ticket_id}")
    assert page.status_code == 200
    assert "Disk is full" in page.text and "My disk filled up overnight." in page.text
    link = re.search(rf'href="(/support/{ticket_id}/attachments/[0-9a-f]+)"', page.text)
    assert link and "screen.png" in page.text
    got = panel.get(link.group(1))
    assert got.status_code == 200 and got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"] == 'attachment; filename="screen.png"'
    assert got.headers["x-content-type-options"] == "nosniff"
    assert len(_stored(app_settings)) == 1
    assert "Disk is full" in panel.get("/support").text


def test_a_double_submit_opens_one_ticket(panel: TestClient, db: Session, customer: User) -> None:
    nonce = uuid.uuid4().hex
    first = _open(panel, nonce=nonce)
    second = _open(panel, nonce=nonce)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert _tickets(db, customer) == 1


def test_the_instance_picker_offers_only_ones_own(
    panel: TestClient, db: Session, customer: User
) -> None:
    bad = _open(panel, instance_id=str(uuid.uuid4()))
    assert bad.status_code == 422
    assert "no such instance of yours" in bad.text
    assert _tickets(db, customer) == 0
    empty = _open(panel, subject="")
    assert empty.status_code == 422 and _tickets(db, customer) == 0


def test_the_csrf_token_must_come_first_and_match(
    panel: TestClient, db: Session, customer: User, app_settings: Settings
) -> None:
    ticket = make_ticket(db, customer)
    db.commit()
    token = csrf_of(panel.get(f"/support/{ticket.id}").text)
    url = f"/support/{ticket.id}/messages"
    file = ("files", ("a.png", PNG, "image/png"))
    cases = {
        "forged": [("csrftoken", token[:-2] + "xx"), ("message", "hi"), file],
        "missing": [("message", "hi"), file],
        "after the file": [("message", "hi"), file, ("csrftoken", token)],
        "after a field": [("message", "hi"), ("csrftoken", token), file],
    }
    for case, parts in cases.items():
        body, headers = _multipart(parts)
        answer = panel.post(url, content=body, headers=headers)
        assert answer.status_code == 403, case
    assert _messages(db, ticket.id) == [] and _stored(app_settings) == []

    body, headers = _multipart([("csrftoken", token), ("message", "hi"), file])
    assert panel.post(url, content=body, headers=headers).status_code == 303
    assert [m.message for m in _messages(db, ticket.id)] == ["hi"]
    assert len(_stored(app_settings)) == 1


def test_multipart_to_a_form_without_files_is_still_415(panel: TestClient, customer: User) -> None:
    token = csrf_of(panel.get("/account").text)
    body, headers = _multipart([("csrftoken", token), ("email", "x@example.com")])
    assert panel.post("/account/profile", content=body, headers=headers).status_code == 415


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        ([("files", ("big.png", PNG + b"\x00" * 2048, "image/png"))], 413, "larger than 1024"),
        ([("files", ("run.sh", b"#!/bin/sh\n", "application/x-sh"))], 422, "cannot be attached"),
        ([("files", ("fake.png", b"#!/bin/sh\n", "image/png"))], 422, "is not image/png"),
        ([("files", (f"{n}.png", PNG, "image/png")) for n in range(3)], 422, "At most 2 files"),
        ([("files", (f"{n}.png", PNG, "image/png")) for n in range(4)], 400, "Too many files"),
    ],
)
def test_attachment_limits_show_on_the_form_and_store_nothing(
    panel: TestClient,
    db: Session,
    customer: User,
    app_settings: Settings,
    files: list[Any],
    status: int,
    message: str,
) -> None:
    site_settings.update_setting(db=db, key="support.attachment_max_bytes", value=1024)
    site_settings.update_setting(db=db, key="support.attachment_max_count", value=2)
    ticket = make_ticket(db, customer)
    db.commit()
    token = csrf_of(panel.get(f"/support/{ticket.id}").text)
    reply = panel.post(
        f"/support/{ticket.id}/messages",
        data={"csrftoken": token, "message": "see attached"},
        files=files,
    )
    assert reply.status_code == status
    assert message in reply.text and 'role="alert"' in reply.text
    if status != 400:  # (a body the parser refuses as a whole keeps nothing)
        assert "see attached" in reply.text  # what was typed is kept
    assert _messages(db, ticket.id) == [] and _stored(app_settings) == []

    opened = _open(panel, files=files)
    assert opened.status_code == status and message in opened.text
    assert _tickets(db, customer) == 1 and _stored(app_settings) == []


def test_staff_replies_show_and_internal_notes_never_do(
    panel: TestClient, client: TestClient, db: Session, customer: User
) -> None:
    make_user(db, username="agent", role="support")
    ticket = make_ticket(db, customer)
    db.commit()
    agent = bearer(login(client, "agent", PASSWORD))
    api = f"/api/v1/tickets/{ticket.id}/messages"
    note = {"message": "SECRET-NOTE: customer seems confused", "is_internal": "true"}
    client.post(
        api, data=note, files=[("files", ("n.txt", b"secret file", "text/plain"))], headers=agent
    )
    client.post(api, json={"message": "Please try the rescue image."}, headers=agent)
    client.patch(
        f"/api/v1/admin/tickets/{ticket.id}", json={"status": "waiting_customer"}, headers=agent
    )

    page = panel.get(f"/support/{ticket.id}").text
    assert "Please try the rescue image." in page and "waiting customer" in page
    assert "SECRET-NOTE" not in page and "n.txt" not in page
    note_file = _messages(db, ticket.id)[0].attachments_json[0]["id"]  # type: ignore[index]
    assert panel.get(f"/support/{ticket.id}/attachments/{note_file}").status_code == 404

    # The customer answers: the ticket reopens.
    token = csrf_of(page)
    answer = panel.post(
        f"/support/{ticket.id}/messages", data={"csrftoken": token, "message": "Still hangs."}
    )
    assert answer.status_code == 303
    page = panel.get(f"/support/{ticket.id}").text
    assert "Still hangs." in page and "SECRET-NOTE" not in page


def test_close_needs_a_confirmation_and_a_rating_is_given_once(
    panel: TestClient, db: Session, customer: User
) -> None:
    ticket = make_ticket(db, customer)
    db.commit()
    token = csrf_of(panel.get(f"/support/{ticket.id}").text)
    url = f"/support/{ticket.id}"
    early = panel.post(f"{url}/rating", data={"csrftoken": token, "rating": "5"})
    assert early.status_code == 409 and "once it is resolved or closed" in early.text
    unconfirmed = panel.post(f"{url}/close", data={"csrftoken": token})
    assert unconfirmed.status_code == 422 and "Tick the box" in unconfirmed.text
    closed = panel.post(f"{url}/close", data={"csrftoken": token, "confirm": "yes"})
    assert closed.status_code == 303
    page = panel.get(url).text
    assert "closed" in page and 'name="rating"' in page and 'name="message"' not in page

    for bad in ("0", "6", "five", "", "²", "٤", "4.5", "1e0", "99999999999999999999"):
        refused = panel.post(f"{url}/rating", data={"csrftoken": token, "rating": bad})
        assert refused.status_code == 422, bad
    assert panel.post(f"{url}/rating", data={"csrftoken": token, "rating": "4"}).status_code == 303
    assert "You rated this help 4 of 5" in panel.get(url).text
    again = panel.post(f"{url}/rating", data={"csrftoken": token, "rating": "1"})
    assert again.status_code == 409 and "already rated" in again.text
    db.expire_all()
    assert db.get(SupportTicket, ticket.id).satisfaction_rating == 4  # type: ignore[union-attr]
    reply = panel.post(f"{url}/messages", data={"csrftoken": token, "message": "hello?"})
    assert reply.status_code == 409 and "open a new one" in reply.text


def test_pages_need_a_login_and_bad_ids_are_404(panel: TestClient, customer: User) -> None:
    assert panel.get("/support/not-a-uuid").status_code in (404, 422)
    assert panel.get(f"/support/{uuid.uuid4()}").status_code == 404
    panel.cookies.clear()
    answer = panel.get("/support")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_the_rate_limit_shows_its_wait(panel: TestClient, db: Session, customer: User) -> None:
    for _ in range(10):
        assert _open(panel).status_code == 303
    refused = _open(panel)
    assert refused.status_code == 429 and refused.headers["retry-after"].isdigit()
    assert "Too many attempts; try again in" in refused.text
    assert _tickets(db, customer) == 10


def test_the_guard_reads_the_token_across_chunks_and_replays_the_body() -> None:
    signer = URLSafeSerializer("test-secret")
    token = signer.dumps("abc", DEFAULT_SIGNING_NAMESPACE)
    body, headers = _multipart([("csrftoken", token), ("message", "hi")])
    seen: dict[str, Any] = {}

    async def protected(scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        seen["body"], seen["headers"] = b"".join(chunks), dict(scope["headers"])

    async def refuse_all(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not the inner app")

    guard = PanelInputGuard(
        refuse_all, protected, signer=signer, upload_paths=re.compile(r"^/support/new$")
    )
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]  # the token split across reads

    async def receive() -> Message:
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    async def send(message: Message) -> None:
        seen.setdefault("sent", []).append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/support/new",
        "headers": [
            (b"content-type", headers["content-type"].encode()),
            (b"cookie", f"__Host-vmc_csrf={token}".encode()),
        ],
    }  # fmt: skip
    asyncio.run(guard(scope, receive, send))
    assert "sent" not in seen  # nothing refused
    assert seen["body"] == body and seen["headers"][b"x-csrftoken"] == token.encode()


def test_refused_new_tickets_do_not_use_up_the_hourly_limit(
    panel: TestClient, db: Session, customer: User
) -> None:
    bad_file = [("files", ("run.sh", b"#!/bin/sh\n", "application/x-sh"))]
    for _ in range(6):
        assert _open(panel, files=bad_file).status_code == 422
        assert _open(panel, instance_id=str(uuid.uuid4())).status_code == 422
    assert _tickets(db, customer) == 0
    for _ in range(10):
        assert _open(panel).status_code == 303
    assert _open(panel).status_code == 429


def test_a_logged_out_upload_without_the_csrf_cookie_goes_to_the_login(
    panel: TestClient, db: Session, customer: User, app_settings: Settings
) -> None:
    ticket = make_ticket(db, customer)
    db.commit()
    body, headers = _multipart([("message", "hi"), ("files", ("a.png", PNG, "image/png"))])
    panel.cookies.delete("__Host-vmc_csrf")  # signed in, no CSRF cookie: still refused
    refused = panel.post(f"/support/{ticket.id}/messages", content=body, headers=headers)
    assert refused.status_code == 403 and "Form expired" in refused.text
    panel.cookies.clear()
    for url in (f"/support/{ticket.id}/messages", "/support/new"):
        answer = panel.post(url, content=body, headers=headers)
        assert answer.status_code == 303, (url, answer.text)
        assert answer.headers["location"].startswith("/login")
    assert _messages(db, ticket.id) == [] and _stored(app_settings) == []
