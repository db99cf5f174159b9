"""The whole API fuzzed from its own OpenAPI document (schemathesis), in process.

Every operation is called with generated input as an anonymous caller, a customer and an
admin, against a small world: a customer with a balance and a running instance on a fake-driver
node, a ticket with an attachment, and their subscription and ledger rows. Path parameters and
a few body fields often (not always) carry the ids of that world, so the calls reach past the
404s and 422s into the services. Each call runs in a savepoint that is rolled back, so every
example starts from the same world, and the run is seeded: it is the same run every time.

Each response must not be a 5xx, and must conform to the document: a documented status code,
the documented content type, a body matching the documented schema, documented headers.

Now and then a generated string or integer (and a few named fields: times, cursors, amounts,
prices, names) is replaced by a value known to break naive code (HOSTILE_TEXT,
HOSTILE_INTEGERS).

The run is bounded (MAX_EXAMPLES generated examples per operation and role, fewer for the
anonymous caller, plus schemathesis's deterministic boundary cases) and derandomized: about two
minutes on two cores. ``VMCLOUD_FUZZ_EXAMPLES=200`` runs a deeper, slower search.

Nothing is excluded: no request makes the server connect anywhere. A node's URI is only
stored (hypervisors are reached by jobs, which are queued in the rolled-back savepoint and never
run); no Stripe API key is configured, so no call goes out to Stripe, while a webhook secret is,
so forged Stripe webhooks are verified and refused locally.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.hooks import HookContext
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Connection, Engine

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node, make_pool
from tests.helpers import JobRunner, bearer, login
from vmcloud.app import create_app
from vmcloud.config import Settings
from vmcloud.core import jobs
from vmcloud.core.mail import make_mailer
from vmcloud.db.session import make_session_factory

pytestmark = pytest.mark.slow

ROLES = ("anonymous", "customer", "admin")
# Generated examples per operation and role (the coverage phase adds its boundary cases).
MAX_EXAMPLES = int(os.environ.get("VMCLOUD_FUZZ_EXAMPLES", "20"))
# An anonymous caller is turned away (401) before most input is read: fewer examples do.
ANONYMOUS_EXAMPLES = max(1, MAX_EXAMPLES // 5)
SEED = 20261201
# How often a parameter that names an object of the world gets a real one.
REAL_ID_PROBABILITY = 0.6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
API = "/api/v1"
# Values known to break naive code, mixed into generated strings and integers (and a few body
# fields) now and then: extreme or offset-shifted times, amounts past NUMERIC(10,2), digits that
# are not ASCII, integers past PostgreSQL's INTEGER and BIGINT, NUL.
HOSTILE_TEXT = [
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "99999999.99",
    "99999999999999999999.99",
    "1e400",
    "-0.00",
    "NaN",
    "Infinity",
    "\u0661\u0662.\u0660\u0660",
    "\uff11\uff12.\uff10\uff10",
    "\u00b9\u00b2\u00b3",
    "\x00",
]
HOSTILE_INTEGERS = [2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 10**30]
# Where they go besides every string and integer parameter (a dotted path into the body).
HOSTILE_FIELDS = [
    "query.since",
    "query.until",
    "query.cursor",
    "body.amount",
    "body.value",
    "body.name",
    "body.message",
    "body.subject",
    "body.pricing_json.hourly",
    "body.pricing_json.monthly",
    "body.pricing_json.yearly",
]
HOSTILE_PROBABILITY = 0.25
# Real values by "location.name", filled by the world fixture and read while examples are drawn.
REAL_VALUES: dict[str, list[str]] = {}


@dataclass
class World:
    connection: Connection
    app: FastAPI
    tokens: dict[str, str]
    values: dict[str, list[str]]  # parameter location.name -> real values


@pytest.fixture(scope="module")
def world(
    engine: Engine, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    connection = engine.connect()
    outer = connection.begin()
    factory = make_session_factory(connection, join_transaction_mode="create_savepoint")
    app_settings = settings.model_copy(
        update={
            "data_dir": Path(tmp_path_factory.mktemp("fuzz")),
            "rate_limit_namespace": f"fuzz{uuid.uuid4().hex[:10]}:",
            "allow_fake_driver": True,
            # Webhooks are then verified (and refused) instead of answering 503 "not configured";
            # no Stripe API key is set, so nothing ever calls out to Stripe.
            "stripe_webhook_secret": SecretStr("whsec_fuzz"),
        }
    )
    app = create_app(app_settings, engine=engine, session_factory=factory)
    try:
        world = _build_world(connection, app, app_settings)
        REAL_VALUES.update(world.values)
        yield world
    finally:
        REAL_VALUES.clear()
        outer.rollback()
        connection.close()


def _build_world(connection: Connection, app: FastAPI, app_settings: Settings) -> World:
    factory = app.state.session_factory
    with factory() as db:
        customer = make_user(db, balance="500.00")
        admin = make_user(db, role="admin")
        node = make_node(db)
        pool = make_pool(db, "198.18.9.0/28")
        db.commit()
        customer_id, admin_id, node_id = str(customer.id), str(admin.id), str(node.id)
        pool_id = str(pool.id)
        customer_name, admin_name = customer.username, admin.username

    client = TestClient(app, raise_server_exceptions=True, client=("198.51.100.9", 50000))
    as_customer = bearer(login(client, customer_name, PASSWORD))
    as_admin = bearer(login(client, admin_name, PASSWORD))
    order = {
        "name": "fuzz-1",
        "product": "nano",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
    }
    created = client.post(f"{API}/instances", json=order, headers=as_customer)
    assert created.status_code == 202, created.text
    instance_id = created.json()["id"]
    jobs.configure(jobs.Runtime(app_settings, factory, make_mailer(app_settings)))
    JobRunner(connection).run("compute.")
    ticket = client.post(
        f"{API}/tickets",
        json={"subject": "Fuzz", "description": "Help", "instance_id": instance_id},
        headers=as_customer,
    )
    assert ticket.status_code == 201, ticket.text
    ticket_id = ticket.json()["id"]
    message = client.post(
        f"{API}/tickets/{ticket_id}/messages",
        data={"message": "The log"},
        files={"files": ("log.txt", b"boot ok\n", "text/plain")},
        headers=as_customer,
    )
    assert message.status_code == 201, message.text
    attachment_id = message.json()["attachments"][0]["id"]
    ledger = client.get(f"{API}/billing/transactions", headers=as_customer).json()["items"]
    subscriptions = client.get(f"{API}/subscriptions", headers=as_customer).json()["items"]

    values = {
        "path.user_id": [customer_id, admin_id],
        "path.instance_id": [instance_id],
        "path.node_id": [node_id],
        "path.pool_id": [pool_id],
        "path.ticket_id": [ticket_id],
        "path.attachment_id": [attachment_id],
        "path.subscription_id": [s["id"] for s in subscriptions],
        "path.transaction_id": [t["id"] for t in ledger],
        "path.ref": ["nano", "micro"],
        "path.key": ["site.name", "billing.currency", "support.categories"],
        "path.provider": ["sandbox", "stripe", "manual"],
        "body.product": ["nano"],
        "body.region": ["local"],
        "body.image": ["tiny-linux"],
        "body.instance_id": [instance_id],
        "body.assigned_to": [admin_id],
        "body.login": [customer_name],
    }
    tokens = {"customer": as_customer["Authorization"], "admin": as_admin["Authorization"]}
    return World(connection=connection, app=app, tokens=tokens, values=values)


def _document() -> dict[str, Any]:
    """The app's OpenAPI document; building it needs no database."""
    placeholder = Settings(
        database_url="postgresql+psycopg://fuzz@127.0.0.1:9/fuzz", jwt_secret="x" * 64
    )
    document: dict[str, Any] = create_app(placeholder).openapi()
    return document


schema = schemathesis.openapi.from_dict(
    _document(),
    config=SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "dictionaries": {
                    "string": {"dictionary": "hostile-text", "probability": HOSTILE_PROBABILITY},
                    "integer": {
                        "dictionary": "hostile-integers",
                        "probability": HOSTILE_PROBABILITY,
                    },
                },
            },
            "dictionaries": {
                "hostile-text": {"values": HOSTILE_TEXT},
                "hostile-integers": {"values": HOSTILE_INTEGERS},
            },
            "parameters": {
                field: {"dictionary": "hostile-text", "probability": HOSTILE_PROBABILITY}
                for field in HOSTILE_FIELDS
            },
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)


def _with_real_values(location: str, generated: Any) -> st.SearchStrategy[Any]:
    """The generated values, or (more often) the same with the world's real ids put in."""
    if not isinstance(generated, dict):
        return st.just(generated)
    real = {
        name: REAL_VALUES[f"{location}.{name}"]
        for name in generated
        if f"{location}.{name}" in REAL_VALUES
    }
    if not real:
        return st.just(generated)
    with_real = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in real.items()})
    return st.one_of(with_real.map(lambda r: {**generated, **r}), st.just(generated))


@schema.hook("flatmap_path_parameters")
def _real_path_parameters(_: HookContext, parameters: Any) -> st.SearchStrategy[Any]:
    return _with_real_values("path", parameters)


@schema.hook("flatmap_body")
def _real_body_fields(_: HookContext, body: Any) -> st.SearchStrategy[Any]:
    return _with_real_values("body", body)


def _exercise(case: Case, world: World, role: str) -> None:
    headers = {"Authorization": world.tokens[role]} if role in world.tokens else None
    # Raw SQL: SQLAlchemy's nested transaction rolls back to its savepoint but never releases
    # it, so savepoints (and their transaction-id locks) would pile up until PostgreSQL runs
    # out of lock slots.
    world.connection.exec_driver_sql("SAVEPOINT fuzz_example")
    try:
        case.call_and_validate(app=world.app, headers=headers, checks=CHECKS)
    finally:
        world.connection.exec_driver_sql("ROLLBACK TO SAVEPOINT fuzz_example")
        world.connection.exec_driver_sql("RELEASE SAVEPOINT fuzz_example")


@schema.parametrize()
@settings(max_examples=ANONYMOUS_EXAMPLES)
def test_as_anonymous(case: Case, world: World) -> None:
    _exercise(case, world, "anonymous")


@schema.parametrize()
def test_as_customer(case: Case, world: World) -> None:
    _exercise(case, world, "customer")


@schema.parametrize()
def test_as_admin(case: Case, world: World) -> None:
    _exercise(case, world, "admin")
