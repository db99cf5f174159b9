"""Panel tests through the real ASGI app over https://testserver: the panel's cookies are
``Secure`` (``__Host-``), so a client on plain http would never send them back."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

CSRF_FIELD = re.compile(r'name="csrftoken" value="([^"]+)"')


@pytest.fixture
def panel(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(
        app,
        base_url="https://testserver",
        raise_server_exceptions=False,
        client=("198.51.100.9", 50000),
        follow_redirects=False,
    ) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def log_in(panel: TestClient, login: str, password: str) -> None:
    token = csrf_of(panel.get("/login").text)
    answer = panel.post("/login", data={"login": login, "password": password, "csrftoken": token})
    assert answer.status_code == 303, answer.text
