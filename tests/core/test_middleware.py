"""Request ids, structured request logs, metrics and the OpenAPI document."""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from vmcloud.core.logging import configure_logging, get_logger


@pytest.fixture
def logged_client(app: FastAPI, client: TestClient) -> TestClient:
    router = APIRouter()

    @router.get("/probe/work")
    def work() -> dict[str, str]:
        get_logger("vmcloud.probe").info("probe.working", step=1)
        return {"ok": "yes"}

    app.include_router(router)
    return client


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_every_response_has_a_request_id(client: TestClient) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/nowhere").headers["x-request-id"]
    assert len(first) == 32
    assert len(second) == 32
    assert first != second


def test_a_sane_incoming_request_id_is_kept_and_a_bad_one_replaced(client: TestClient) -> None:
    kept = client.get("/healthz", headers={"X-Request-ID": "edge-proxy-1234abcd"})
    assert kept.headers["x-request-id"] == "edge-proxy-1234abcd"
    replaced = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert replaced.headers["x-request-id"] != "bad id <script>"
    assert len(replaced.headers["x-request-id"]) == 32


def test_log_lines_are_json_and_carry_the_request_id(
    logged_client: TestClient, capfd: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")  # bind the handler to the captured stderr
    response = logged_client.get("/probe/work", headers={"X-Request-ID": "trace-00000042"})
    assert response.status_code == 200
    lines = _json_lines(capfd.readouterr().err)
    mine = [line for line in lines if line.get("request_id") == "trace-00000042"]
    events = {line["event"] for line in mine}
    assert {"probe.working", "request"} <= events
    access = next(line for line in mine if line["event"] == "request")
    assert access["status"] == 200
    assert access["route"] == "/probe/work"
    # No line of this request went out without its id.
    assert all(
        line.get("request_id") == "trace-00000042"
        for line in lines
        if line.get("event") in {"probe.working", "request"} and line.get("path") != "/healthz"
    )


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    def count() -> float:
        text = client.get("/metrics").text
        for line in text.splitlines():
            if line.startswith(
                'vmcloud_http_requests_total{method="GET",route="/healthz",status="200"}'
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = count()
    client.get("/healthz")
    client.get("/healthz")
    assert count() == before + 2
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "vmcloud_http_request_duration_seconds_bucket" in metrics.text
    # Unmatched paths share one label instead of creating a series per random URL.
    client.get("/random/abc123")
    assert 'route="/random/abc123"' not in client.get("/metrics").text


def test_openapi_document(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert "/readyz" in document["paths"]
    assert client.get("/docs").status_code == 200
