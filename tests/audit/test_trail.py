"""The audit trail through the API: one row per mutation with exactly the changed values, no
secrets, rows the database refuses to change, the admin listing, and the client address."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.accounts.models import User
from vmcloud.app import create_app
from vmcloud.audit.models import AuditLog
from vmcloud.catalog.models import Product
from vmcloud.compute.models import Instance
from vmcloud.config import Settings

PEER = "198.51.100.7"
AGENT = {"User-Agent": "trail-test/1.0"}
PRODUCTS = "/api/v1/admin/products"
AUDIT = "/api/v1/admin/audit-logs"
PLAN = {
    "name": "Small",
    "slug": "small-trail",
    "specs_json": {"vcpus": 1, "memory_mb": 1024, "disk_gb": 20},
    "pricing_json": {"hourly": "0.007", "monthly": "5.00"},
    "features_json": ["SSD"],
}


# -- helpers -------------------------------------------------------------------------------


class Trail:
    """The audit rows written since the last ``mark()``, oldest first."""

    def __init__(self, db: Session) -> None:
        self.db = db
        self.seen: set[uuid.UUID] = set()
        self.mark()

    def mark(self) -> None:
        self.seen = set(self.db.scalars(select(AuditLog.id)))

    def new(self) -> list[AuditLog]:
        rows = self.db.scalars(select(AuditLog).order_by(AuditLog.timestamp, AuditLog.id))
        return [row for row in rows if row.id not in self.seen]

    def only(self) -> AuditLog:
        rows = self.new()
        assert len(rows) == 1, [(r.action, r.entity_type) for r in rows]
        return rows[0]


@pytest.fixture
def admin(db: Session) -> User:
    return make_user(db, role="admin")


@pytest.fixture
def admin_auth(client: TestClient, admin: User) -> dict[str, str]:
    return {**bearer(login(client, admin.username, PASSWORD)), **AGENT}


@pytest.fixture
def trail(db: Session, admin_auth: dict[str, str]) -> Trail:
    return Trail(db)  # marked after the admin's login


def _create_plan(client: TestClient, auth: dict[str, str], **changes: Any) -> dict[str, Any]:
    response = client.post(PRODUCTS, json={**PLAN, **changes}, headers=auth)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# -- one row per mutation --------------------------------------------------------------------


def test_product_create_writes_one_row_with_who_what_and_where(
    client: TestClient, admin: User, admin_auth: dict[str, str], trail: Trail
) -> None:
    plan = _create_plan(client, admin_auth)

    row = trail.only()
    assert row.action == "product.create"
    assert row.entity_type == "product"
    assert row.entity_id == uuid.UUID(plan["id"])
    assert row.user_id == admin.id
    assert row.ip_address == PEER
    assert row.user_agent == "trail-test/1.0"
    assert row.old_values is None
    assert row.new_values is not None
    assert row.new_values["name"] == "Small"
    assert row.new_values["slug"] == "small-trail"
    assert row.new_values["pricing_json"] == {"hourly": "0.007", "monthly": "5.00"}
    assert row.new_values["specs_json"] == {"vcpus": 1, "memory_mb": 1024, "disk_gb": 20}


def test_product_update_records_exactly_the_changed_fields(
    client: TestClient, admin: User, admin_auth: dict[str, str], trail: Trail
) -> None:
    plan = _create_plan(client, admin_auth)
    trail.mark()

    # slug and pricing are sent unchanged: they are not changes and must not be recorded.
    response = client.patch(
        f"{PRODUCTS}/{plan['id']}",
        json={
            "name": "Small plus",
            "slug": "small-trail",
            "sort_order": 7,
            "pricing_json": PLAN["pricing_json"],
        },
        headers=admin_auth,
    )
    assert response.status_code == 200, response.text

    row = trail.only()
    assert (row.action, row.entity_type, row.entity_id) == (
        "product.update",
        "product",
        uuid.UUID(plan["id"]),
    )
    assert row.user_id == admin.id
    assert row.old_values == {"name": "Small", "sort_order": 0}
    assert row.new_values == {"name": "Small plus", "sort_order": 7}


def test_delete_of_unused_product_records_its_old_values(
    client: TestClient, db: Session, admin_auth: dict[str, str], trail: Trail
) -> None:
    plan = _create_plan(client, admin_auth)
    trail.mark()

    assert client.delete(f"{PRODUCTS}/{plan['id']}", headers=admin_auth).status_code == 204

    row = trail.only()
    assert (row.action, row.entity_type, row.entity_id) == (
        "product.delete",
        "product",
        uuid.UUID(plan["id"]),
    )
    assert row.new_values is None
    assert row.old_values is not None
    assert row.old_values["name"] == "Small"
    assert row.old_values["slug"] == "small-trail"
    assert row.old_values["pricing_json"] == PLAN["pricing_json"]
    assert db.get(Product, uuid.UUID(plan["id"]), populate_existing=True) is None


def test_delete_of_product_in_use_archives_it(
    client: TestClient, db: Session, admin_auth: dict[str, str], trail: Trail
) -> None:
    plan = _create_plan(client, admin_auth)
    owner = make_user(db)
    db.add(Instance(user_id=owner.id, product_id=uuid.UUID(plan["id"]), name="vm-1"))
    db.flush()
    trail.mark()

    response = client.delete(f"{PRODUCTS}/{plan['id']}", headers=admin_auth)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "archived"

    row = trail.only()
    assert (row.action, row.entity_type, row.entity_id) == (
        "product.archive",
        "product",
        uuid.UUID(plan["id"]),
    )
    assert row.old_values == {"status": "active"}
    assert row.new_values == {"status": "archived"}
    product = db.get(Product, uuid.UUID(plan["id"]), populate_existing=True)
    assert product is not None and product.status == "archived"


def test_setting_update_records_old_and_new_value_and_the_key(
    client: TestClient, admin: User, admin_auth: dict[str, str], trail: Trail
) -> None:
    response = client.put(
        "/api/v1/admin/settings/site.name", json={"value": "Trail Cloud"}, headers=admin_auth
    )
    assert response.status_code == 200, response.text

    row = trail.only()
    assert (row.action, row.entity_type, row.user_id) == ("setting.update", "setting", admin.id)
    assert row.old_values == {"value": "VMCloud"}
    assert row.new_values == {"value": "Trail Cloud"}
    assert row.metadata_json == {"key": "site.name"}


def test_suspending_a_user_records_user_suspend(
    client: TestClient, db: Session, admin: User, admin_auth: dict[str, str], trail: Trail
) -> None:
    customer = make_user(db)
    trail.mark()

    response = client.patch(
        f"/api/v1/admin/users/{customer.id}", json={"status": "suspended"}, headers=admin_auth
    )
    assert response.status_code == 200, response.text

    row = trail.only()
    assert (row.action, row.entity_type, row.entity_id, row.user_id) == (
        "user.suspend",
        "user",
        customer.id,
        admin.id,
    )
    assert row.old_values == {"status": "active"}
    assert row.new_values == {"status": "suspended"}


def test_customer_profile_edit_records_user_update(
    client: TestClient, db: Session, trail: Trail
) -> None:
    customer = make_user(db)
    auth = {**bearer(login(client, customer.username, PASSWORD)), **AGENT}
    trail.mark()

    assert client.patch("/api/v1/me", json={"first_name": "Quinn"}, headers=auth).status_code == 200

    row = trail.only()
    assert (row.action, row.entity_type, row.entity_id, row.user_id) == (
        "user.update",
        "user",
        customer.id,
        customer.id,
    )
    assert row.old_values == {"first_name": None}
    assert row.new_values == {"first_name": "Quinn"}
    assert (row.ip_address, row.user_agent) == (PEER, "trail-test/1.0")


def test_registration_records_the_new_user_as_actor(
    client: TestClient, db: Session, trail: Trail
) -> None:
    response = client.post(
        "/api/v1/auth/register",
        json={"email": "new@example.com", "username": "newcomer", "password": PASSWORD},
        headers=AGENT,
    )
    assert response.status_code == 201, response.text
    user_id = uuid.UUID(response.json()["id"])

    row = trail.only()
    assert (row.action, row.entity_type, row.entity_id) == ("user.register", "user", user_id)
    # Nobody is logged in: the one who acted is the account just created.
    assert row.user_id == user_id
    assert row.new_values is not None
    assert row.new_values["username"] == "newcomer"
    assert row.new_values["password_hash"] == "[redacted]"


def test_a_refused_mutation_writes_no_row(
    client: TestClient, admin_auth: dict[str, str], trail: Trail
) -> None:
    response = client.post(PRODUCTS, json={**PLAN, "slug": "Not A Slug"}, headers=admin_auth)
    assert response.status_code == 422
    assert trail.new() == []


# -- no secrets ------------------------------------------------------------------------------


def test_no_secret_reaches_the_audit_trail(client: TestClient, db: Session) -> None:
    first_password = "a long first passphrase 41"
    second_password = "another long passphrase 42"
    registered = client.post(
        "/api/v1/auth/register",
        json={"email": "sec@example.com", "username": "secretive", "password": first_password},
    )
    assert registered.status_code == 201, registered.text
    user = db.get(User, uuid.UUID(registered.json()["id"]))
    assert user is not None
    secrets = [first_password, user.password_hash]

    tokens = login(client, "secretive", first_password)
    secrets += [tokens["refresh_token"], tokens["access_token"]]
    changed = client.post(
        "/api/v1/me/password",
        json={"current_password": first_password, "new_password": second_password},
        headers=bearer(tokens),
    )
    assert changed.status_code == 204, changed.text
    setup = client.post("/api/v1/me/2fa/setup", headers=bearer(tokens))
    assert setup.status_code == 200, setup.text
    db.refresh(user)
    assert user.two_factor_secret
    secrets += [second_password, user.password_hash, setup.json()["secret"]]
    secrets.append(user.two_factor_secret)  # as stored (encrypted)

    rows = db.scalars(select(AuditLog).where(AuditLog.entity_id == user.id)).all()
    actions = {row.action for row in rows}
    assert {"user.register", "user.login", "user.password_change", "user.2fa_setup"} <= actions
    for row in rows:
        dumped = json.dumps([row.old_values, row.new_values, row.metadata_json])
        leaked = [s for s in secrets if s in dumped]
        assert leaked == [], (row.action, dumped)
    changes = {row.action: row for row in rows}
    assert changes["user.password_change"].new_values == {"password_hash": "[redacted]"}
    assert changes["user.2fa_setup"].new_values == {"two_factor_secret": "[redacted]"}


# -- append-only -----------------------------------------------------------------------------


@pytest.fixture
def stored_row(db: Session) -> AuditLog:
    """A plain INSERT is allowed: the trail is append-only, not read-only."""
    row = AuditLog(action="test.insert", entity_type="test", new_values={"n": 1})
    db.add(row)
    db.flush()
    return row


@pytest.mark.parametrize(
    ("statement", "verb"),
    [
        ("UPDATE audit_logs SET action = 'test.tampered' WHERE id = :id", "update"),
        ("DELETE FROM audit_logs WHERE id = :id", "delete"),
        ("TRUNCATE audit_logs", "truncate"),
    ],
    ids=["update", "delete", "truncate"],
)
def test_database_refuses_to_change_audit_rows(
    db: Session, stored_row: AuditLog, statement: str, verb: str
) -> None:
    row_id = stored_row.id
    refusal = f"audit_logs rows cannot be {verb}"
    with pytest.raises(ProgrammingError, match=refusal) as refused, db.begin_nested():
        db.execute(text(statement), {"id": row_id})
    assert getattr(refused.value.orig, "sqlstate", None) == "42501"  # insufficient_privilege

    kept = db.execute(
        text("SELECT action FROM audit_logs WHERE id = :id"), {"id": row_id}
    ).scalar_one()
    assert kept == "test.insert"


def test_inserting_an_audit_row_works(db: Session, stored_row: AuditLog) -> None:
    found = db.execute(
        text("SELECT action, new_values FROM audit_logs WHERE id = :id"), {"id": stored_row.id}
    ).one()
    assert tuple(found) == ("test.insert", {"n": 1})


# -- GET /admin/audit-logs --------------------------------------------------------------------

T0 = datetime(2001, 1, 1)  # long before any row the app writes during the test


def _iso(moment: datetime) -> str:
    return moment.isoformat() + "Z"


@pytest.fixture
def history(db: Session) -> dict[str, Any]:
    """Seven rows in 2001, one an hour (two share 03:00), of two actors and two entities."""
    alice, bob = make_user(db), make_user(db)
    gadget, gizmo = uuid.uuid4(), uuid.uuid4()
    spec = [
        (0, alice, "widget", gadget, "widget.create"),
        (1, bob, "widget", gadget, "widget.poke"),
        (2, alice, "widget", gizmo, "widget.create"),
        (3, alice, "widget", gizmo, "widget.poke"),
        (3, bob, "gizmo", gizmo, "gizmo.poke"),
        (4, bob, "widget", gadget, "widget.poke"),
        (5, alice, "gizmo", gadget, "gizmo.poke"),
    ]
    rows = []
    for hour, actor, entity_type, entity_id, action in spec:
        row = AuditLog(
            user_id=actor.id,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            timestamp=T0 + timedelta(hours=hour),
        )
        db.add(row)
        rows.append(row)
    db.flush()
    newest_first = sorted(rows, key=lambda r: (r.timestamp, r.id), reverse=True)
    return {"alice": alice, "bob": bob, "gadget": gadget, "gizmo": gizmo, "rows": newest_first}


def _ids(rows: list[AuditLog]) -> list[str]:
    return [str(r.id) for r in rows]


def _list(client: TestClient, auth: dict[str, str], **query: Any) -> dict[str, Any]:
    response = client.get(AUDIT, params=query, headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _in_2001(client: TestClient, auth: dict[str, str], **query: Any) -> list[str]:
    query = {"until": _iso(T0 + timedelta(days=1)), "limit": 200, **query}
    return [item["id"] for item in _list(client, auth, **query)["items"]]


def test_filters_narrow_the_trail(
    client: TestClient, admin_auth: dict[str, str], history: dict[str, Any]
) -> None:
    rows: list[AuditLog] = history["rows"]
    alice, gadget = history["alice"], history["gadget"]

    def expect(keep: Any) -> list[str]:
        return _ids([r for r in rows if keep(r)])

    assert _in_2001(client, admin_auth) == _ids(rows)
    assert _in_2001(client, admin_auth, user_id=str(alice.id)) == expect(
        lambda r: r.user_id == alice.id
    )
    assert _in_2001(client, admin_auth, entity_type="gizmo") == expect(
        lambda r: r.entity_type == "gizmo"
    )
    assert _in_2001(client, admin_auth, entity_id=str(gadget)) == expect(
        lambda r: r.entity_id == gadget
    )
    assert _in_2001(client, admin_auth, action="widget.poke") == expect(
        lambda r: r.action == "widget.poke"
    )
    window = _in_2001(
        client,
        admin_auth,
        since=_iso(T0 + timedelta(minutes=90)),
        until=_iso(T0 + timedelta(minutes=210)),
    )
    assert window == expect(
        lambda r: T0 + timedelta(minutes=90) < r.timestamp < T0 + timedelta(minutes=210)
    )
    assert len(window) == 3
    combined = _in_2001(client, admin_auth, user_id=str(alice.id), entity_type="widget")
    assert combined == expect(lambda r: r.user_id == alice.id and r.entity_type == "widget")
    assert len(combined) == 3


def test_since_and_until_honour_the_offset(
    client: TestClient, admin_auth: dict[str, str], history: dict[str, Any]
) -> None:
    # 06:30+05:00 is 01:30 UTC: the rows of 02:00 onwards.
    after = _in_2001(client, admin_auth, since="2001-01-01T06:30:00+05:00")
    assert after == _ids([r for r in history["rows"] if r.timestamp > T0 + timedelta(hours=1)])


def test_results_are_newest_first(
    client: TestClient, admin_auth: dict[str, str], history: dict[str, Any]
) -> None:
    items = _list(client, admin_auth, limit=200)["items"]
    stamps = [datetime.fromisoformat(item["timestamp"]) for item in items]
    assert len(stamps) > len(history["rows"])  # the admin's login of today is there too
    assert stamps == sorted(stamps, reverse=True)
    assert [i["id"] for i in items if i["timestamp"].startswith("2001")] == _ids(history["rows"])


def _walk(client: TestClient, auth: dict[str, str], **query: Any) -> Iterator[list[str]]:
    cursor = None
    while True:
        page = _list(client, auth, limit=2, **query, **({"cursor": cursor} if cursor else {}))
        yield [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return


def test_keyset_pagination_walks_every_row_once(
    client: TestClient, admin_auth: dict[str, str], history: dict[str, Any]
) -> None:
    pages = list(_walk(client, admin_auth, until=_iso(T0 + timedelta(days=1))))
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [i for page in pages for i in page] == _ids(history["rows"])


def test_keyset_pagination_is_stable_under_inserts(
    client: TestClient, db: Session, admin_auth: dict[str, str], history: dict[str, Any]
) -> None:
    walk = _walk(client, admin_auth, entity_type="widget")
    seen = next(walk)
    added: list[AuditLog] = []
    for page in walk:
        # Others keep writing while the admin reads: rows of the same entity type, now.
        fresh = [AuditLog(action="widget.poke", entity_type="widget") for _ in range(2)]
        db.add_all(fresh)
        db.flush()
        added += fresh
        seen += page

    expected = _ids([r for r in history["rows"] if r.entity_type == "widget"])
    assert seen == expected
    assert len(set(seen)) == len(seen)
    assert added and not set(_ids(added)) & set(seen)


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        base64.urlsafe_b64encode(b"[1]").decode(),
        base64.urlsafe_b64encode(b'["yesterday", "nobody"]').decode(),
        base64.urlsafe_b64encode(b'{"timestamp": 1}').decode(),
    ],
    ids=["garbage", "wrong-length", "wrong-types", "not-a-list"],
)
def test_bad_cursor_is_422(client: TestClient, admin_auth: dict[str, str], cursor: str) -> None:
    response = client.get(AUDIT, params={"cursor": cursor}, headers=admin_auth)
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/validation"


@pytest.mark.parametrize(
    "query",
    [
        {"since": "last tuesday"},
        {"until": "2001-13-01T00:00:00Z"},
        {"user_id": "not-a-uuid"},
        {"entity_id": "42"},
        {"limit": 0},
        {"limit": 201},
        {"limit": "ten"},
    ],
    ids=["since", "until", "user_id", "entity_id", "limit-0", "limit-201", "limit-text"],
)
def test_bad_query_is_422(
    client: TestClient, admin_auth: dict[str, str], query: dict[str, Any]
) -> None:
    response = client.get(AUDIT, params=query, headers=admin_auth)
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/validation"


def test_limit_bounds_are_inclusive(client: TestClient, admin_auth: dict[str, str]) -> None:
    assert client.get(AUDIT, params={"limit": 1}, headers=admin_auth).status_code == 200
    assert client.get(AUDIT, params={"limit": 200}, headers=admin_auth).status_code == 200


# -- the client's address --------------------------------------------------------------------

SPOOFED = {"X-Forwarded-For": "203.0.113.9"}


def test_forwarded_for_is_ignored_from_an_untrusted_peer(
    client: TestClient, admin_auth: dict[str, str], trail: Trail
) -> None:
    _create_plan(client, {**admin_auth, **SPOOFED})
    assert trail.only().ip_address == PEER


@pytest.fixture
def proxied_client(
    app_settings: Settings, engine: Engine, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    settings = app_settings.model_copy(update={"trusted_proxies": ["198.51.100.0/24"]})
    app = create_app(settings, engine=engine, session_factory=session_factory)
    with TestClient(app, raise_server_exceptions=False, client=(PEER, 50000)) as behind_proxy:
        yield behind_proxy


def test_forwarded_for_is_believed_from_a_trusted_proxy(
    proxied_client: TestClient, db: Session, admin: User
) -> None:
    auth = {**bearer(login(proxied_client, admin.username, PASSWORD)), **AGENT, **SPOOFED}
    trail = Trail(db)

    _create_plan(proxied_client, auth)

    row = trail.only()
    assert (row.action, row.ip_address, row.user_agent) == (
        "product.create",
        "203.0.113.9",
        "trail-test/1.0",
    )
