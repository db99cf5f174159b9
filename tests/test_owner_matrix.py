"""The owner matrix: every customer-facing endpoint that names an object (by a path id, or an
id or token in its body) called by the object's owner, another customer, support and an admin.

Each call is checked twice: the status, and what it did — a change must have happened exactly
when the table says so, a read must show the object, and a refusal must not mention it. The
tables are checked against the app's own routes (its OpenAPI document, which lists every route
however routers are nested), so a new endpoint under /api/v1 without a row here fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user, new_public_key
from tests.factories.compute import make_node, make_pool
from tests.helpers import bearer, login
from vmcloud.accounts.models import ApiToken, RefreshToken, SshKey
from vmcloud.accounts.tokens import hash_secret
from vmcloud.billing.models import Subscription
from vmcloud.compute.models import Instance, InstanceMetric
from vmcloud.core.clock import utcnow
from vmcloud.support.models import SupportTicket, TicketMessage

API = "/api/v1"
ROLES = ("owner", "other", "support", "admin")
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
SCREENSHOT = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32

Ids = dict[str, str]  # the object's path parameters and what a body may name
Effect = Callable[[Session, Ids], object]  # what a successful call changes


@dataclass(frozen=True)
class Row:
    kind: str  # which object the call names (see Objects.make)
    want: tuple[int, int, int, int]  # status for owner, other customer, support, admin
    body: Callable[[Ids], dict[str, Any]] | None = None
    effect: Effect | None = None  # writes: must change on success, and only then
    changed_by: tuple[str, ...] | None = None  # who changes it, when not every 2xx does
    shows: Callable[[httpx.Response, Ids], bool] | None = None  # reads: the answer is it


def _instance(*columns: Any) -> Effect:
    return lambda db, ids: db.execute(
        select(*columns).where(Instance.id == uuid.UUID(ids["instance_id"]))
    ).one()


def _ticket(*columns: Any) -> Effect:
    return lambda db, ids: db.execute(
        select(*columns).where(SupportTicket.id == uuid.UUID(ids["ticket_id"]))
    ).one()


def _messages(db: Session, ids: Ids) -> object:
    ticket_id = uuid.UUID(ids["ticket_id"])
    return db.scalar(select(func.count()).where(TicketMessage.ticket_id == ticket_id))


def _tickets_naming(db: Session, ids: Ids) -> object:
    instance_id = uuid.UUID(ids["instance_id"])
    return db.scalar(select(func.count()).where(SupportTicket.instance_id == instance_id))


def _auto_renew(db: Session, ids: Ids) -> object:
    sub_id = uuid.UUID(ids["subscription_id"])
    return db.scalar(select(Subscription.auto_renew).where(Subscription.id == sub_id))


def _revoked(db: Session, ids: Ids) -> object:
    token = uuid.UUID(ids["refresh_token_id"])
    return db.scalar(select(RefreshToken.revoked_at).where(RefreshToken.id == token))


def _key_count(db: Session, ids: Ids) -> object:
    return db.scalar(select(func.count()).where(SshKey.id == uuid.UUID(ids["key_id"])))


def _token_revoked(db: Session, ids: Ids) -> object:
    return db.scalar(select(ApiToken.revoked_at).where(ApiToken.id == uuid.UUID(ids["token_id"])))


def _instance_count(db: Session, ids: Ids) -> object:
    return db.scalar(select(func.count(Instance.id)))


def _is(key: str) -> Callable[[httpx.Response, Ids], bool]:
    return lambda response, ids: bool(response.json()["id"] == ids[key])


OWNER_AND_ADMIN = (200, 404, 404, 200)  # support reads but does not change it
OWNER_AND_STAFF = (200, 404, 200, 200)

MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/instances/{instance_id}"): Row("vm", OWNER_AND_STAFF, shows=_is("instance_id")),
    ("PATCH", "/instances/{instance_id}"): Row(
        "vm", OWNER_AND_ADMIN, lambda ids: {"name": "renamed"}, _instance(Instance.name)
    ),
    ("DELETE", "/instances/{instance_id}"): Row(
        "vm", (202, 404, 404, 202), effect=_instance(Instance.status)
    ),
    ("POST", "/instances/{instance_id}/actions"): Row(
        "vm", (202, 404, 404, 202), lambda ids: {"type": "stop"}, _instance(Instance.status)
    ),
    ("GET", "/instances/{instance_id}/metrics"): Row(
        "vm", OWNER_AND_STAFF, shows=lambda response, ids: len(response.json()["items"]) == 1
    ),
    ("GET", "/instances/{instance_id}/metrics/series"): Row(
        "vm", OWNER_AND_STAFF, shows=lambda response, ids: len(response.json()["points"]) == 1
    ),
    ("GET", "/subscriptions/{subscription_id}"): Row(
        "vm", OWNER_AND_STAFF, shows=_is("subscription_id")
    ),
    ("POST", "/subscriptions/{subscription_id}/cancel"): Row(
        "vm", OWNER_AND_ADMIN, effect=_auto_renew
    ),
    ("GET", "/tickets/{ticket_id}"): Row("ticket", OWNER_AND_STAFF, shows=_is("ticket_id")),
    ("POST", "/tickets/{ticket_id}/messages"): Row(
        "ticket", (201, 404, 201, 201), lambda ids: {"message": "Any news?"}, _messages
    ),
    ("POST", "/tickets/{ticket_id}/close"): Row(
        "ticket", OWNER_AND_STAFF, effect=_ticket(SupportTicket.status)
    ),
    # Staff see the ticket, so refusing them says nothing new: only its customer rates it.
    ("POST", "/tickets/{ticket_id}/rating"): Row(
        "resolved-ticket",
        (200, 404, 403, 403),
        lambda ids: {"rating": 5},
        _ticket(SupportTicket.satisfaction_rating),
    ),
    ("GET", "/tickets/{ticket_id}/attachments/{attachment_id}"): Row(
        "ticket", OWNER_AND_STAFF, shows=lambda response, ids: response.content == SCREENSHOT
    ),
    # Named in the body: a ticket may be about the caller's own instance only.
    ("POST", "/tickets"): Row(
        "vm",
        (201, 422, 422, 422),
        lambda ids: {
            "subject": "Slow",
            "description": "It is slow",
            "instance_id": ids["instance_id"],
        },
        _tickets_naming,
    ),
    # Someone else's refresh token ends nothing (and says nothing).
    ("POST", "/auth/logout"): Row(
        "login",
        (204, 204, 204, 204),
        lambda ids: {"refresh_token": ids["refresh_token"]},
        _revoked,
        changed_by=("owner",),
    ),
    # A login (refresh-token family) is its user's alone: staff end logins from /admin.
    ("DELETE", "/me/sessions/{session_id}"): Row("login", (204, 404, 404, 404), effect=_revoked),
    # Saved SSH keys and personal API tokens are their user's alone.
    ("DELETE", "/me/ssh-keys/{key_id}"): Row("ssh-key", (204, 404, 404, 404), effect=_key_count),
    ("DELETE", "/me/tokens/{token_id}"): Row(
        "api-token", (204, 404, 404, 404), effect=_token_revoked
    ),
    # Named in the body: an order may use the caller's own saved keys only.
    ("POST", "/instances"): Row(
        "ssh-key",
        (202, 422, 422, 422),
        lambda ids: {
            "name": "keyed",
            "product": "nano",
            "region": "local",
            "image": "tiny-linux",
            "billing_cycle": "monthly",
            "ssh_key_ids": [ids["key_id"]],
        },
        _instance_count,
    ),
}

# Endpoints that need a login but name no object: the caller's own account, own lists, orders.
OWN_ONLY = {
    ("GET", "/me"),
    ("PATCH", "/me"),
    ("POST", "/me/password"),
    ("POST", "/me/2fa/setup"),
    ("POST", "/me/2fa/enable"),
    ("POST", "/me/2fa/disable"),
    ("GET", "/me/sessions"),
    ("POST", "/me/sessions/revoke-others"),
    ("GET", "/me/ssh-keys"),
    ("POST", "/me/ssh-keys"),
    ("GET", "/me/tokens"),
    ("POST", "/me/tokens"),
    ("GET", "/instances"),
    ("GET", "/billing/balance"),
    ("GET", "/billing/transactions"),
    ("POST", "/billing/top-ups"),
    ("GET", "/subscriptions"),
    ("GET", "/tickets"),
}

# Endpoints for anyone: signing up and in, the catalogue, and payment providers.
ANONYMOUS = {
    ("POST", "/auth/register"),
    ("POST", "/auth/verify-email"),
    ("POST", "/auth/resend-verification"),
    ("POST", "/auth/login"),
    ("POST", "/auth/refresh"),
    ("POST", "/auth/password-reset/request"),
    ("POST", "/auth/password-reset/confirm"),
    ("GET", "/products"),
    ("GET", "/products/{ref}"),
    ("GET", "/regions"),
    ("GET", "/images"),
    ("GET", "/settings/public"),
    ("POST", "/billing/webhooks/{provider}"),
}


def test_every_customer_route_is_in_a_table(app: FastAPI) -> None:
    served: dict[tuple[str, str], bool] = {
        (method.upper(), path.removeprefix(API)): "security" in operation
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(f"{API}/") and not path.startswith(f"{API}/admin")
        for method, operation in operations.items()
        if method.upper() in HTTP_METHODS
    }
    tables = set(MATRIX) | OWN_ONLY | ANONYMOUS
    assert set(served) == tables, (
        f"missing rows: {sorted(set(served) - tables)}; stale rows: {sorted(tables - set(served))}"
    )
    assert not set(MATRIX) & OWN_ONLY and not (set(MATRIX) | OWN_ONLY) & ANONYMOUS
    # The tables say who may call; the routes must agree (OpenAPI lists a bearer requirement).
    assert {route for route in ANONYMOUS if served[route]} == set()
    assert {route for route in set(MATRIX) | OWN_ONLY if not served[route]} == set()
    # An id in the path names an object: it needs a row in the matrix.
    assert {route for route in OWN_ONLY if "{" in route[1]} == set()


class Objects:
    """The callers, and objects of the owner's made the way customers make them."""

    def __init__(self, client: TestClient, db: Session) -> None:
        self.client, self.db = client, db
        make_node(db)
        make_pool(db, "198.18.9.0/24")
        self.users = {
            "owner": make_user(db, balance="500.00"),
            "other": make_user(db, balance="500.00"),
            "support": make_user(db, role="support"),
            "admin": make_user(db, role="admin"),
        }
        self.headers = {
            role: bearer(login(client, user.username, PASSWORD))
            for role, user in self.users.items()
        }

    def _post(self, path: str, **kwargs: Any) -> Any:
        response = self.client.post(API + path, headers=self.headers["owner"], **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def make(self, kind: str) -> Ids:
        if kind == "vm":
            return self._vm()
        if kind in ("ticket", "resolved-ticket"):
            ids = self._ticket()
            if kind == "resolved-ticket":
                ticket_id = uuid.UUID(ids["ticket_id"])
                self.db.execute(
                    update(SupportTicket)
                    .where(SupportTicket.id == ticket_id)
                    .values(status="resolved")
                )
                self.db.flush()
            return ids
        if kind == "ssh-key":
            key = {"name": "laptop", "public_key": new_public_key()}
            return {"key_id": self._post("/me/ssh-keys", json=key)["id"]}
        if kind == "api-token":
            token = {"name": "ci", "scopes": ["account:read"]}
            return {"token_id": self._post("/me/tokens", json=token)["id"]}
        assert kind == "login", kind
        tokens = login(self.client, self.users["owner"].username, PASSWORD)
        token = self.db.scalar(
            select(RefreshToken).where(RefreshToken.token == hash_secret(tokens["refresh_token"]))
        )
        assert token is not None
        return {
            "refresh_token": tokens["refresh_token"],
            "refresh_token_id": str(token.id),
            "session_id": str(token.family_id),
        }

    def _vm(self) -> Ids:
        order = {
            "name": "web-1",
            "product": "nano",
            "region": "local",
            "image": "tiny-linux",
            "billing_cycle": "monthly",
        }
        instance_id = uuid.UUID(self._post("/instances", json=order)["id"])
        # As if provisioned: running, with one usage sample.
        self.db.execute(update(Instance).where(Instance.id == instance_id).values(status="running"))
        self.db.add(
            InstanceMetric(
                instance_id=instance_id,
                collected_at=utcnow(),
                cpu_percent=1.0,
                memory_used_mb=64,
                disk_read_bytes=0,
                disk_write_bytes=0,
                net_rx_bytes=0,
                net_tx_bytes=0,
                cpu_time_ns=0,
            )
        )
        self.db.flush()
        sub_id = self.db.scalar(
            select(Subscription.id).where(Subscription.instance_id == instance_id)
        )
        return {"instance_id": str(instance_id), "subscription_id": str(sub_id)}

    def _ticket(self) -> Ids:
        ticket = self._post("/tickets", json={"subject": "Boot", "description": "It hangs."})
        files = [("files", ("screen.png", SCREENSHOT, "image/png"))]
        message = self._post(
            f"/tickets/{ticket['id']}/messages", data={"message": "See this."}, files=files
        )
        return {"ticket_id": ticket["id"], "attachment_id": message["attachments"][0]["id"]}


@pytest.fixture
def objects(client: TestClient, db: Session) -> Objects:
    return Objects(client, db)


PROBLEMS = {403: "/problems/forbidden", 404: "/problems/not-found", 422: "/problems/validation"}


@pytest.mark.parametrize(("method", "path"), list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_who_may_do_what_to_whose_object(
    objects: Objects, db: Session, method: str, path: str
) -> None:
    row = MATRIX[(method, path)]
    shared = objects.make(row.kind) if method == "GET" else None
    wrong: list[str] = []
    for role, want in zip(ROLES, row.want, strict=True):
        ids = shared or objects.make(row.kind)  # a change gets an object of its own
        before = row.effect(db, ids) if row.effect else None
        response = objects.client.request(
            method,
            API + path.format(**ids),
            json=row.body(ids) if row.body else None,
            headers=objects.headers[role],
        )
        db.expire_all()
        ok = response.status_code < 300
        if response.status_code != want:
            wrong.append(f"{role}: {response.status_code}, not {want}: {response.text[:200]}")
            continue
        if not ok:
            assert response.json()["type"] == PROBLEMS[want], (role, response.text)
            assert not any(value in response.text for value in ids.values()), (role, response.text)
        if row.effect is not None:
            should_change = role in row.changed_by if row.changed_by is not None else ok
            changed = row.effect(db, ids) != before
            if changed != should_change:
                wrong.append(f"{role}: {'changed' if changed else 'did not change'} it")
        if row.shows is not None and ok and not row.shows(response, ids):
            wrong.append(f"{role}: the answer is not the object: {response.text[:200]}")
    assert not wrong, "\n".join(wrong)


# Rows where staff powers make a difference: a staff member's personal token without the
# ``admin`` scope must get what another customer gets there.
STAFF_POWERS = [route for route, row in MATRIX.items() if len(set(row.want[1:])) > 1]
CUSTOMER_SCOPES = ["instances:write", "billing:write", "support:write", "account:write"]


@pytest.mark.parametrize(
    ("method", "path"), STAFF_POWERS, ids=[f"{m} {p}" for m, p in STAFF_POWERS]
)
def test_a_staff_token_without_the_admin_scope_is_another_customer(
    objects: Objects, db: Session, method: str, path: str
) -> None:
    row = MATRIX[(method, path)]
    wrong: list[str] = []
    for role in ("support", "admin"):
        made = objects.client.post(
            f"{API}/me/tokens",
            json={"name": "ci", "scopes": CUSTOMER_SCOPES},
            headers=objects.headers[role],
        )
        token = {"Authorization": f"Bearer {made.json()['token']}"}
        ids = objects.make(row.kind)
        before = row.effect(db, ids) if row.effect else None
        response = objects.client.request(
            method,
            API + path.format(**ids),
            json=row.body(ids) if row.body else None,
            headers=token,
        )
        db.expire_all()
        if response.status_code != row.want[1]:
            wrong.append(f"{role}: {response.status_code}, not {row.want[1]}")
        if row.effect is not None and row.effect(db, ids) != before:
            wrong.append(f"{role}: changed it")
    assert not wrong, "\n".join(wrong)
