"""A staff member's personal token has staff powers only with the ``admin`` scope (read for
reads, write for writes): without it the token acts as a plain customer on every route, so
another customer's ticket, internal notes and instances are out of its reach."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node, make_pool
from tests.factories.support import make_ticket
from tests.helpers import bearer, login
from vmcloud.accounts.models import User
from vmcloud.compute.models import Instance
from vmcloud.support import service as support
from vmcloud.support.models import TicketMessage
from vmcloud.support.schemas import MessageCreate

API = "/api/v1"


def _token(client: TestClient, user: User, *scopes: str) -> dict[str, str]:
    headers = bearer(login(client, user.username, PASSWORD))
    made = client.post(
        f"{API}/me/tokens", json={"name": "t", "scopes": list(scopes)}, headers=headers
    )
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['token']}"}


def _ticket_with_note(db: Session) -> Any:
    customer = make_user(db)
    ticket = make_ticket(db, customer, subject="Billing question")
    staff = make_user(db, role="support")
    note = MessageCreate(message="INTERNAL NOTE: refund denied", is_internal=True)
    support.add_message(db=db, ticket=ticket, author=staff, body=note, uploads=[], storage=None)  # type: ignore[arg-type]
    db.flush()
    return ticket


def test_a_support_token_without_admin_scope_reads_no_other_customers_ticket(
    client: TestClient, db: Session
) -> None:
    ticket = _ticket_with_note(db)
    agent = make_user(db, role="support")
    plain = client.get(f"{API}/tickets/{ticket.id}", headers=_token(client, agent, "support:read"))
    assert plain.status_code == 404, plain.text
    assert "INTERNAL NOTE" not in plain.text
    staff = _token(client, agent, "support:read", "admin:read")
    seen = client.get(f"{API}/tickets/{ticket.id}", headers=staff)
    assert seen.status_code == 200 and "INTERNAL NOTE" in seen.text


def _notes(db: Session, ticket_id: uuid.UUID) -> int:
    db.expire_all()
    rows = db.scalars(select(TicketMessage).where(TicketMessage.ticket_id == ticket_id)).all()
    return len(rows)


def test_a_support_write_token_without_admin_scope_posts_no_internal_note(
    client: TestClient, db: Session
) -> None:
    ticket = _ticket_with_note(db)
    agent = make_user(db, role="support")
    body = {"message": "planted note", "is_internal": True}
    url = f"{API}/tickets/{ticket.id}/messages"
    before = _notes(db, ticket.id)
    refused = client.post(url, json=body, headers=_token(client, agent, "support:write"))
    assert refused.status_code == 404, refused.text
    # admin:read is not enough to write as staff
    read_only = _token(client, agent, "support:write", "admin:read")
    assert client.post(url, json=body, headers=read_only).status_code == 404
    assert _notes(db, ticket.id) == before
    staff = _token(client, agent, "support:write", "admin:write")
    assert client.post(url, json=body, headers=staff).status_code == 201
    assert _notes(db, ticket.id) == before + 1


def _customer_instance(client: TestClient, db: Session) -> uuid.UUID:
    make_node(db)
    make_pool(db, "198.18.9.0/24")
    owner = make_user(db, balance="500.00")
    order = {
        "name": "web-1",
        "product": "nano",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
    }
    headers = bearer(login(client, owner.username, PASSWORD))
    made = client.post(f"{API}/instances", json=order, headers=headers)
    assert made.status_code == 202, made.text
    return uuid.UUID(made.json()["id"])


def test_an_admin_instances_token_without_admin_scope_changes_no_customers_instance(
    client: TestClient, db: Session
) -> None:
    instance_id = _customer_instance(client, db)
    admin = make_user(db, role="admin")
    url = f"{API}/instances/{instance_id}"
    for scopes in (("instances:write",), ("instances:write", "admin:read")):
        token = _token(client, admin, *scopes)
        rename = client.patch(url, json={"name": "taken"}, headers=token)
        assert rename.status_code == 404, (scopes, rename.text)
        assert client.delete(url, headers=token).status_code == 404
    assert client.get(url, headers=_token(client, admin, "instances:read")).status_code == 404
    db.expire_all()
    instance = db.get(Instance, instance_id)
    assert instance is not None and instance.name == "web-1" and instance.deleted_at is None
    staff = _token(client, admin, "instances:write", "admin:write")
    assert client.patch(url, json={"name": "renamed"}, headers=staff).status_code == 200
    db.expire_all()
    assert db.get(Instance, instance_id).name == "renamed"  # type: ignore[union-attr]


def test_acting_as_a_customer_never_changes_the_stored_role(
    client: TestClient, db: Session
) -> None:
    admin = make_user(db, role="admin")
    token = _token(client, admin, "account:write")
    changed = client.patch(f"{API}/me", json={"first_name": "Ops"}, headers=token)
    assert changed.status_code < 300, changed.text
    db.expire_all()
    assert db.scalar(select(User.role).where(User.id == admin.id)) == "admin"
