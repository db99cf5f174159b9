"""Every panel route that names an object by id answers 404 to another customer, and changes
nothing. The table is checked against the panel's own routes: a new route with an id in its
path and no row here fails the inventory test."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.testclient import WebSocketDenialResponse

from tests.factories.accounts import PASSWORD, make_user, new_public_key
from tests.factories.billing import pending_payment
from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from tests.helpers import login
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts import api_tokens, ssh_keys
from vmcloud.accounts.models import ApiToken, RefreshToken, SshKey, User
from vmcloud.billing import flows
from vmcloud.billing.models import Subscription
from vmcloud.compute.models import Instance
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.config import Settings
from vmcloud.support import service as support
from vmcloud.support.attachments import Upload
from vmcloud.support.models import SupportTicket, TicketMessage
from vmcloud.support.schemas import TicketAdminUpdate, TicketCreate
from vmcloud.support.storage import storage_for
from vmcloud.web.app import ROUTERS

SAME_ORIGIN = {"origin": "https://testserver"}


@dataclass(frozen=True)
class Owned:
    instance: Instance
    subscription: Subscription
    top_up: uuid.UUID
    session: uuid.UUID
    ticket: SupportTicket
    attachment: str
    ssh_key: uuid.UUID
    api_token: uuid.UUID


# What each route needs from the owner's objects (a tuple for a path with two ids), and the
# form it posts.
ROWS: dict[tuple[str, str], tuple[Callable[[Owned], Any], dict[str, str]]] = {
    ("POST", "/account/sessions/{session_id}/logout"): (lambda o: o.session, {}),
    ("POST", "/account/ssh-keys/{key_id}/delete"): (
        lambda o: o.ssh_key,
        {"confirm_name": "theirs"},
    ),
    ("POST", "/account/tokens/{token_id}/revoke"): (
        lambda o: o.api_token,
        {"confirm_name": "theirs"},
    ),
    ("GET", "/billing/top-ups/{entry_id}/checkout"): (lambda o: o.top_up, {}),
    ("POST", "/billing/subscriptions/{subscription_id}/cancel"): (
        lambda o: o.subscription.id,
        {"confirm_name": "theirs"},
    ),
    ("GET", "/instances/{instance_id}"): (lambda o: o.instance.id, {}),
    ("GET", "/instances/{instance_id}/stream"): (lambda o: o.instance.id, {}),
    ("GET", "/instances/{instance_id}/graphs"): (lambda o: o.instance.id, {}),
    ("GET", "/instances/{instance_id}/graphs/stream"): (lambda o: o.instance.id, {}),
    ("GET", "/instances/{instance_id}/graphs.csv"): (lambda o: o.instance.id, {}),
    ("GET", "/instances/{instance_id}/console"): (lambda o: o.instance.id, {}),
    ("POST", "/instances/{instance_id}/console/ctrl-alt-del"): (lambda o: o.instance.id, {}),
    ("WEBSOCKET", "/instances/{instance_id}/console/ws"): (lambda o: o.instance.id, {}),
    ("POST", "/instances/{instance_id}/power"): (lambda o: o.instance.id, {"action": "stop"}),
    ("POST", "/instances/{instance_id}/rename"): (lambda o: o.instance.id, {"name": "mine-now"}),
    ("POST", "/instances/{instance_id}/delete"): (
        lambda o: o.instance.id,
        {"confirm_name": "theirs"},
    ),
    ("GET", "/support/{ticket_id}"): (lambda o: o.ticket.id, {}),
    ("GET", "/support/{ticket_id}/stream"): (lambda o: o.ticket.id, {}),
    ("GET", "/support/{ticket_id}/attachments/{attachment_id}"): (
        lambda o: (o.ticket.id, o.attachment),
        {},
    ),
    ("POST", "/support/{ticket_id}/messages"): (lambda o: o.ticket.id, {"message": "mine now"}),
    ("POST", "/support/{ticket_id}/close"): (lambda o: o.ticket.id, {"confirm": "yes"}),
    ("POST", "/support/{ticket_id}/rating"): (lambda o: o.ticket.id, {"rating": "1"}),
}


def _walk(router: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in router.routes:
        if hasattr(route, "original_router"):  # an included router
            context_prefix = getattr(route.include_context, "prefix", "") or ""
            yield from _walk(route.original_router, prefix + context_prefix)
        else:
            for method in getattr(route, "methods", None) or {"WEBSOCKET"}:
                yield method, prefix + route.path


def panel_routes_with_ids() -> set[tuple[str, str]]:
    return {(m, p) for router in ROUTERS for m, p in _walk(router) if "{" in p and m != "HEAD"}


def test_every_panel_route_with_an_id_has_a_row() -> None:
    assert panel_routes_with_ids() == set(ROWS)


@pytest.fixture
def owned(db: Session, panel: TestClient, app_settings: Settings) -> Owned:
    make_node(db, vcpus=64, memory_mb=65536, disk_gb=1000)
    make_pool(db, "198.18.65.0/24")
    plan = make_product(
        db,
        slug="foreign-ids",
        specs_json={"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
        pricing_json={"hourly": "0.0074", "monthly": "4.00", "yearly": "40.00"},
    )
    owner = make_user(db, balance="50.00")
    body = InstanceCreate(
        name="theirs", product=plan.slug, region="local", image="tiny-linux",
        billing_cycle="monthly",
    )  # fmt: skip
    instance = flows.order_instance(db=db, owner=owner, body=body)
    payment = pending_payment(db, owner.id, "sandbox", f"sbx_{uuid.uuid4().hex}")
    ticket = support.open_ticket(
        db=db,
        user=owner,
        body=TicketCreate(subject="theirs", description="theirs", instance_id=instance.id),
        uploads=[Upload(name="theirs.txt", content_type="text/plain", data=b"theirs")],
        storage=storage_for(app_settings),
    )
    support.update_ticket(db=db, ticket=ticket, body=TicketAdminUpdate(status="resolved"))
    key = ssh_keys.add_key(db=db, user=owner, name="theirs", public_key=new_public_key())
    token, _ = api_tokens.create_token(
        db=db, user=owner, name="theirs", scopes=["account:read"], expires_at=None
    )
    db.commit()
    login(panel, owner.username, PASSWORD)  # the owner's own login, through the API
    session = db.scalars(select(RefreshToken.family_id).where(RefreshToken.user_id == owner.id))
    subscription = db.scalars(select(Subscription).where(Subscription.user_id == owner.id)).one()
    message = db.scalars(select(TicketMessage).where(TicketMessage.ticket_id == ticket.id)).one()
    attachment = str((message.attachments_json or [{}])[0]["id"])
    return Owned(
        instance, subscription, payment.id, session.one(), ticket, attachment, key.id, token.id
    )


def _state(db: Session, owned: Owned) -> tuple[object, ...]:
    db.expire_all()
    instance = db.get(Instance, owned.instance.id)
    subscription = db.get(Subscription, owned.subscription.id)
    revoked = db.scalars(
        select(RefreshToken.revoked_at).where(RefreshToken.family_id == owned.session)
    ).all()
    ticket = db.get(SupportTicket, owned.ticket.id)
    key = db.get(SshKey, owned.ssh_key)
    token = db.get(ApiToken, owned.api_token)
    assert instance and subscription and ticket and key and token
    messages = db.scalars(select(TicketMessage.id).where(TicketMessage.ticket_id == ticket.id))
    return (
        instance.name, instance.status, subscription.auto_renew, subscription.status, revoked,
        ticket.status, ticket.satisfaction_rating, len(messages.all()), token.revoked_at,
    )  # fmt: skip


@pytest.mark.parametrize(("method", "path"), sorted(ROWS))
def test_another_customer_gets_404_and_changes_nothing(
    panel: TestClient, db: Session, owned: Owned, method: str, path: str
) -> None:
    intruder: User = make_user(db, balance="5.00")
    db.commit()
    log_in(panel, intruder.username, PASSWORD)
    id_of, form = ROWS[(method, path)]
    ids = iter(found if isinstance(found := id_of(owned), tuple) else (found,))
    url = re.sub(r"\{\w+\}", lambda _: str(next(ids)), path)
    before = _state(db, owned)
    if method == "WEBSOCKET":
        with pytest.raises(WebSocketDenialResponse) as refused:
            panel.websocket_connect(f"wss://testserver{url}", headers=SAME_ORIGIN).__enter__()
        answer = refused.value
    elif method == "GET":
        answer = panel.get(url)
    else:
        token = csrf_of(panel.get("/account").text)
        answer = panel.post(url, data={"csrftoken": token, **form})
    assert answer.status_code == 404, (url, answer.status_code, answer.text[:300])
    assert "theirs" not in answer.text
    assert _state(db, owned) == before
