"""Problem responses (RFC 9457) for every kind of failure a client can cause."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from vmcloud.core.errors import ConflictError, RateLimitedError
from vmcloud.core.schemas import InputModel

PROBLEM = "application/problem+json"


class Widget(InputModel):
    name: str
    size: int


def _install_probe_routes(app: FastAPI) -> None:
    router = APIRouter(prefix="/probe")

    @router.post("/widgets", status_code=201)
    def create_widget(body: Widget) -> dict[str, object]:
        return {"name": body.name, "size": body.size}

    @router.get("/conflict")
    def conflict() -> None:
        raise ConflictError("That name is taken.")

    @router.get("/slow-down")
    def slow_down() -> None:
        raise RateLimitedError(retry_after=30)

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret-dsn=postgresql://user:hunter2@db/prod")

    app.include_router(router)


@pytest.fixture
def probe(app: FastAPI, client: TestClient) -> TestClient:
    _install_probe_routes(app)
    return client


def _problem(response_json: dict[str, object], status: int, type_: str) -> None:
    assert response_json["status"] == status
    assert response_json["type"] == type_
    assert isinstance(response_json["title"], str)
    assert response_json["title"]
    assert isinstance(response_json["detail"], str)
    assert response_json["detail"]


def test_valid_body_is_accepted(probe: TestClient) -> None:
    response = probe.post("/probe/widgets", json={"name": "a", "size": 3})
    assert response.status_code == 201
    assert response.json() == {"name": "a", "size": 3}


def test_malformed_json_is_400(probe: TestClient) -> None:
    response = probe.post(
        "/probe/widgets",
        content=b'{"name": "a", "size": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    _problem(response.json(), 400, "/problems/malformed-json")


def test_wrong_type_is_422_with_the_field(probe: TestClient) -> None:
    response = probe.post("/probe/widgets", json={"name": "a", "size": "big"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    _problem(body, 422, "/problems/validation")
    assert [e["field"] for e in body["errors"]] == ["size"]
    assert body["errors"][0]["message"]


def test_unknown_field_is_422(probe: TestClient) -> None:
    response = probe.post("/probe/widgets", json={"name": "a", "size": 1, "role": "admin"})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["role"]


def test_missing_body_is_422(probe: TestClient) -> None:
    response = probe.post("/probe/widgets")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"


def test_unknown_route_is_404(probe: TestClient) -> None:
    response = probe.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    _problem(response.json(), 404, "/problems/not-found")


def test_unknown_method_is_405_with_allow(probe: TestClient) -> None:
    response = probe.delete("/probe/widgets")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    _problem(response.json(), 405, "/problems/method-not-allowed")


def test_service_problems_keep_status_and_headers(probe: TestClient) -> None:
    response = probe.get("/probe/conflict")
    assert response.status_code == 409
    assert response.json()["detail"] == "That name is taken."
    _problem(response.json(), 409, "/problems/conflict")
    limited = probe.get("/probe/slow-down")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "30"


def test_unexpected_error_is_500_without_internals(
    probe: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = probe.get("/probe/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    _problem(body, 500, "/problems/internal")
    raw = json.dumps(body)
    assert "hunter2" not in raw
    assert "RuntimeError" not in raw
    assert "Traceback" not in raw
    assert body["request_id"] == response.headers["x-request-id"]
    # ...while the operator's log has the whole story.
    assert any("request.unhandled_error" in str(r.msg) for r in caplog.records)
