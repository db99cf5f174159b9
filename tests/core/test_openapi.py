"""The OpenAPI document tells the truth about errors: every operation lists the problem
responses its route can give, as ``application/problem+json`` bodies of the ``Problem`` schema,
and the ticket-message endpoint documents the two bodies it reads by hand."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vmcloud.core.errors import PROBLEM_MEDIA_TYPE
from vmcloud.core.openapi import PROBLEM_REF, RAISED_BY_SERVICES

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture
def doc(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def operations(doc: dict[str, Any]) -> list[Operation]:
    return [
        (method.upper(), path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method in HTTP_METHODS
    ]


def statuses(op: dict[str, Any]) -> set[int]:
    return {int(code) for code in op["responses"]}


def test_the_served_document_is_the_rewritten_one(client: TestClient, doc: dict[str, Any]) -> None:
    served = client.get("/openapi.json").json()
    assert served == doc
    assert "Problem" in served["components"]["schemas"]


def test_every_error_response_is_a_problem(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        for code, response in op["responses"].items():
            if int(code) < 400:
                continue
            content = response.get("content", {})
            assert list(content) == [PROBLEM_MEDIA_TYPE], (method, path, code)
            assert content[PROBLEM_MEDIA_TYPE]["schema"] == {"$ref": PROBLEM_REF}


def test_fastapis_validation_error_shape_is_gone(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert "HTTPValidationError" not in str(doc["paths"])


def test_the_problem_schema_describes_what_is_sent(client: TestClient, doc: dict[str, Any]) -> None:
    schema = doc["components"]["schemas"]["Problem"]
    invalid = client.post("/api/v1/auth/login", json={"login": 5})
    anonymous = client.get("/api/v1/me")
    for response in (invalid, anonymous):
        body = response.json()
        assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert set(schema["required"]) <= set(body) <= set(schema["properties"]), body
    errors = invalid.json()["errors"]
    item = schema["properties"]["errors"]["items"]
    assert all(set(item["required"]) == set(e) for e in errors)


def test_authenticated_operations_list_401(doc: dict[str, Any]) -> None:
    secured = [(m, p, op) for m, p, op in operations(doc) if op.get("security")]
    assert len(secured) > 30
    for method, path, op in secured:
        assert 401 in statuses(op), (method, path)
    assert 401 not in statuses(doc["paths"]["/api/v1/products"]["get"])


def test_role_checked_operations_list_403(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        if path.startswith("/api/v1/admin"):
            assert 403 in statuses(op), (method, path)
    # A verified email is required to spend money or create instances.
    assert 403 in statuses(doc["paths"]["/api/v1/instances"]["post"])
    # Any authenticated operation is 403 outside a personal API token's scopes; a public one
    # never is.
    assert 403 in statuses(doc["paths"]["/api/v1/instances"]["get"])
    assert 403 not in statuses(doc["paths"]["/api/v1/products"]["get"])


def test_operations_with_a_path_id_list_404(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        assert (404 in statuses(op)) == ("{" in path), (method, path)


def test_operations_with_input_list_422_and_400(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        has_input = bool(op.get("parameters")) or "requestBody" in op
        assert (422 in statuses(op)) == has_input, (method, path)
        assert (400 in statuses(op)) >= has_input, (method, path)


def test_idempotent_operations_list_409(doc: dict[str, Any]) -> None:
    keyed = [
        (m, p, op)
        for m, p, op in operations(doc)
        if any(prm["name"].lower() == "idempotency-key" for prm in op.get("parameters", []))
    ]
    assert len(keyed) == 6  # the five before step 11, and making a personal token
    for method, path, op in keyed:
        assert 409 in statuses(op), (method, path)


def test_operations_with_a_body_list_413(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        if "requestBody" in op:
            assert 413 in statuses(op), (method, path)
    assert 413 not in statuses(doc["paths"]["/api/v1/me"]["get"])


def test_rate_limited_operations_list_429(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    for path in ("/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/tickets"):
        assert 429 in statuses(paths[path]["post"]), path
    assert 429 not in statuses(paths["/api/v1/products"]["get"])
    headers = paths["/api/v1/auth/login"]["post"]["responses"]["429"]["headers"]
    assert "Retry-After" in headers


def test_database_backed_operations_list_503(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        if path.startswith("/api/v1"):
            assert 503 in statuses(op), (method, path)
    assert 503 not in statuses(doc["paths"]["/healthz"]["get"])


def test_service_raised_statuses_name_real_operations(doc: dict[str, Any]) -> None:
    real = {f"{m} {p}" for m, p, _ in operations(doc)}
    assert set(RAISED_BY_SERVICES) <= real, set(RAISED_BY_SERVICES) - real
    assert 402 in statuses(doc["paths"]["/api/v1/instances"]["post"])


def test_the_ticket_message_endpoint_documents_both_bodies(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/v1/tickets/{ticket_id}/messages"]["post"]
    content = op["requestBody"]["content"]
    assert op["requestBody"]["required"] is True
    as_json = content["application/json"]["schema"]
    assert as_json["required"] == ["message"]
    assert set(as_json["properties"]) == {"message", "is_internal"}
    form = content["multipart/form-data"]["schema"]
    assert set(form["properties"]) == {"message", "is_internal", "files"}
    assert form["properties"]["files"]["items"] == {"type": "string", "format": "binary"}
    assert {413, 422, 429} <= statuses(op)
