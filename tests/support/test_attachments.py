"""Attachments: multipart uploads within the settings' limits, stored outside the database,
downloaded only by those who may see the message."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.config import Settings
from vmcloud.site_settings import service as site_settings

TICKETS = "/api/v1/tickets"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def headers(client: TestClient, db: Session) -> dict[str, dict[str, str]]:
    for name, role in (("owner", "customer"), ("other", "customer"), ("agent", "support")):
        make_user(db, username=name, role=role)
    return {name: bearer(login(client, name, PASSWORD)) for name in ("owner", "other", "agent")}


@pytest.fixture
def ticket(client: TestClient, headers: dict[str, dict[str, str]]) -> str:
    body = {"subject": "Screenshot", "description": "See attached."}
    return str(client.post(TICKETS, json=body, headers=headers["owner"]).json()["id"])


def _stored(settings: Settings) -> list[Path]:
    root = settings.data_dir / "attachments"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _post(
    client: TestClient, ticket: str, who: dict[str, str], files: list[Any], **fields: str
) -> Any:
    data = {"message": "files attached"} | fields
    return client.post(f"{TICKETS}/{ticket}/messages", data=data, files=files, headers=who)


def test_upload_and_download(
    client: TestClient,
    headers: dict[str, dict[str, str]],
    ticket: str,
    app_settings: Settings,
) -> None:
    files = [
        ("files", ("../../etc/screen shot.png", PNG, "image/png")),
        ("files", ("notes.txt", "héllo\n".encode(), "text/plain")),
    ]
    posted = _post(client, ticket, headers["owner"], files)
    assert posted.status_code == 201, posted.text
    meta = posted.json()["attachments"]
    assert [(a["name"], a["size"], a["content_type"]) for a in meta] == [
        ("screen shot.png", len(PNG), "image/png"),
        ("notes.txt", 7, "text/plain"),
    ]
    assert meta[0]["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert "key" not in meta[0]  # where it is stored is not the customer's business
    assert len(_stored(app_settings)) == 2

    url = f"{TICKETS}/{ticket}/attachments/{meta[0]['id']}"
    for who in ("owner", "agent"):
        got = client.get(url, headers=headers[who])
        assert got.status_code == 200
        assert got.content == PNG
        assert got.headers["content-type"] == "image/png"
        assert got.headers["content-disposition"].startswith("attachment;")
        assert got.headers["x-content-type-options"] == "nosniff"
    assert client.get(url, headers=headers["other"]).status_code == 404
    assert client.get(url).status_code == 401
    missing = f"{TICKETS}/{ticket}/attachments/{'f' * 32}"
    assert client.get(missing, headers=headers["owner"]).status_code == 404
    shown = client.get(f"{TICKETS}/{ticket}", headers=headers["owner"]).json()
    assert shown["messages"][0]["attachments"] == meta


def test_an_internal_notes_attachment_is_staff_only(
    client: TestClient, headers: dict[str, dict[str, str]], ticket: str
) -> None:
    posted = _post(
        client,
        ticket,
        headers["agent"],
        [("files", ("log.txt", b"secret log", "text/plain"))],
        is_internal="true",
    )
    assert posted.status_code == 201 and posted.json()["is_internal"] is True
    url = f"{TICKETS}/{ticket}/attachments/{posted.json()['attachments'][0]['id']}"
    assert client.get(url, headers=headers["agent"]).status_code == 200
    assert client.get(url, headers=headers["owner"]).status_code == 404


@pytest.mark.parametrize(
    ("files", "status"),
    [
        ([("files", ("big.png", PNG + b"\x00" * 2048, "image/png"))], 413),
        ([("files", ("run.sh", b"#!/bin/sh\nrm -rf /", "application/x-sh"))], 422),
        ([("files", ("fake.png", b"#!/bin/sh\n", "image/png"))], 422),
        ([("files", ("bin.txt", b"\xff\xfe\x00", "text/plain"))], 422),
        ([("files", ("empty.png", b"", "image/png"))], 422),
        ([("files", (f"{n}.png", PNG, "image/png")) for n in range(4)], 422),
        ([("other", ("a.png", PNG, "image/png"))], 422),
        # A good file beside a bad one: nothing of the message is stored.
        (
            [
                ("files", ("ok.png", PNG, "image/png")),
                ("files", ("bad.exe", b"MZ", "application/octet-stream")),
            ],
            422,
        ),
    ],
)
def test_refused_uploads_store_nothing(
    client: TestClient,
    db: Session,
    headers: dict[str, dict[str, str]],
    ticket: str,
    app_settings: Settings,
    files: list[Any],
    status: int,
) -> None:
    site_settings.update_setting(db=db, key="support.attachment_max_bytes", value=1024)
    site_settings.update_setting(db=db, key="support.attachment_max_count", value=3)
    db.commit()  # settings reach other sessions' caches on commit
    response = _post(client, ticket, headers["owner"], files)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert _stored(app_settings) == []
    assert client.get(f"{TICKETS}/{ticket}", headers=headers["owner"]).json()["messages"] == []


def test_a_customer_cannot_set_is_internal_in_a_form_either(
    client: TestClient, headers: dict[str, dict[str, str]], ticket: str, app_settings: Settings
) -> None:
    files = [("files", ("a.png", PNG, "image/png"))]
    response = _post(client, ticket, headers["owner"], files, is_internal="true")
    assert response.status_code == 403
    assert _stored(app_settings) == []


@pytest.mark.parametrize(
    "data",
    [{}, {"message": ""}, {"message": "x", "extra": "y"}, {"message": "x\u0000"}],
)
def test_bad_form_fields_are_422(
    client: TestClient, headers: dict[str, dict[str, str]], ticket: str, data: dict[str, str]
) -> None:
    response = client.post(
        f"{TICKETS}/{ticket}/messages",
        data=data,
        files=[("files", ("a.png", PNG, "image/png"))],
        headers=headers["owner"],
    )
    assert response.status_code == 422, response.text


def test_malformed_json_is_400(
    client: TestClient, headers: dict[str, dict[str, str]], ticket: str
) -> None:
    response = client.post(
        f"{TICKETS}/{ticket}/messages",
        content=b"{not json",
        headers=headers["owner"] | {"content-type": "application/json"},
    )
    assert response.status_code == 400


def test_a_body_larger_than_any_allowed_message_is_refused_unread(
    client: TestClient,
    db: Session,
    headers: dict[str, dict[str, str]],
    ticket: str,
    app_settings: Settings,
) -> None:
    site_settings.update_setting(db=db, key="support.attachment_max_bytes", value=1024)
    site_settings.update_setting(db=db, key="support.attachment_max_count", value=1)
    db.commit()
    huge = b"x" * (6 * 1024 * 1024)
    response = _post(client, ticket, headers["owner"], [("files", ("big.txt", huge, "text/plain"))])
    assert response.status_code == 413
    assert _stored(app_settings) == []
