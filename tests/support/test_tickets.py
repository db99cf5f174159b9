"""Support tickets through the API: the whole conversation, what customers never see, who may
do what, and the status machine."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import JobRunner, Mailbox, bearer, login
from vmcloud.accounts.models import User
from vmcloud.audit.models import AuditLog
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import AUTO_CLOSE_DAYS

TICKETS = "/api/v1/tickets"
QUEUE = "/api/v1/admin/tickets"
SECRET_NOTE = "Internal: customer is on the abuse watchlist, do not refund"


class People:
    def __init__(self, client: TestClient, db: Session) -> None:
        self.customer_user = make_user(db, username="alice", email="alice@example.com")
        self.agent_user = make_user(db, role="support", username="sam", email="sam@example.com")
        self.admin_user = make_user(db, role="admin", username="ada", email="ada@example.com")
        self.stranger_user = make_user(db, username="eve", email="eve@example.com")
        self.customer = bearer(login(client, "alice", PASSWORD))
        self.agent = bearer(login(client, "sam", PASSWORD))
        self.admin = bearer(login(client, "ada", PASSWORD))
        self.stranger = bearer(login(client, "eve", PASSWORD))


@pytest.fixture
def people(client: TestClient, db: Session) -> People:
    return People(client, db)


def _open(client: TestClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    body = {"subject": "My VM will not boot", "description": "It hangs at GRUB."} | overrides
    response = client.post(TICKETS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_the_whole_conversation(
    client: TestClient, db: Session, people: People, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    ticket = _open(client, people.customer, category="technical", priority="high")
    assert (ticket["status"], ticket["priority"], ticket["category"]) == (
        "open",
        "high",
        "technical",
    )
    tid = ticket["id"]
    job_runner.run("support.")
    # Unassigned: every active staff member hears of the new ticket.
    assert len(mailbox.to("sam@example.com")) == 1 and len(mailbox.to("ada@example.com")) == 1
    # Their email leads to the staff's page of the ticket on the panel.
    to_staff = mailbox.to("sam@example.com")[0].get_content()
    assert f"/admin/tickets/{tid}\n" in to_staff and "/api/v1/" not in to_staff

    # Staff assign, note, reply.
    assigned = client.patch(
        f"{QUEUE}/{tid}", json={"assigned_to": str(people.agent_user.id)}, headers=people.admin
    )
    assert assigned.status_code == 200 and assigned.json()["assigned_to"] == str(
        people.agent_user.id
    )
    note = client.post(
        f"{TICKETS}/{tid}/messages",
        json={"message": SECRET_NOTE, "is_internal": True},
        headers=people.agent,
    )
    assert note.status_code == 201 and note.json()["is_internal"] is True
    reply = client.post(
        f"{TICKETS}/{tid}/messages",
        json={"message": "Please try the rescue image."},
        headers=people.agent,
    )
    assert reply.status_code == 201
    waiting = client.patch(
        f"{QUEUE}/{tid}", json={"status": "waiting_customer"}, headers=people.agent
    )
    assert waiting.json()["status"] == "waiting_customer"
    job_runner.run("support.")
    to_customer = mailbox.to("alice@example.com")
    assert [m["Subject"] for m in to_customer] == ["[VMCloud] Re: My VM will not boot"]
    assert "rescue image" in to_customer[0].get_content()
    # The email leads to the ticket's page on the panel.
    assert f"/support/{tid}\n" in to_customer[0].get_content()
    assert "/api/v1/" not in to_customer[0].get_content()

    # The customer's view: the public reply, never the note.
    seen = client.get(f"{TICKETS}/{tid}", headers=people.customer).json()
    assert [m["message"] for m in seen["messages"]] == ["Please try the rescue image."]
    assert seen["messages"][0]["author_role"] == "staff"
    assert "is_internal" not in seen["messages"][0] and "assigned_to" not in seen

    # The customer replies: the ticket reopens to its assignee, who is told.
    answer = client.post(
        f"{TICKETS}/{tid}/messages", json={"message": "Still hangs."}, headers=people.customer
    )
    assert answer.status_code == 201
    assert client.get(f"{TICKETS}/{tid}", headers=people.customer).json()["status"] == (
        "in_progress"
    )
    job_runner.run("support.")
    assert len(mailbox.to("sam@example.com")) == 2
    assert len(mailbox.to("ada@example.com")) == 1  # assigned now: only the assignee

    resolved = client.patch(f"{QUEUE}/{tid}", json={"status": "resolved"}, headers=people.agent)
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolved_at"] is not None
    job_runner.run("support.")
    assert mailbox.to("alice@example.com")[-1]["Subject"].startswith("[VMCloud] Resolved")

    rated = client.post(f"{TICKETS}/{tid}/rating", json={"rating": 5}, headers=people.customer)
    assert rated.status_code == 200 and rated.json()["satisfaction_rating"] == 5
    again = client.post(f"{TICKETS}/{tid}/rating", json={"rating": 1}, headers=people.customer)
    assert again.status_code == 409
    closed = client.post(f"{TICKETS}/{tid}/close", headers=people.customer)
    assert closed.json()["status"] == "closed"
    assert client.post(f"{TICKETS}/{tid}/close", headers=people.customer).status_code == 409

    # Staff see everything, in order.
    full = client.get(f"{TICKETS}/{tid}", headers=people.agent).json()
    assert [m["is_internal"] for m in full["messages"]] == [True, False, False]
    # No email to the customer ever carried the note.
    for message in mailbox.to("alice@example.com"):
        assert SECRET_NOTE not in message.get_content()
    actions = set(db.scalars(select(AuditLog.action)).all())
    assert {
        "ticket.create",
        "ticket.update",
        "ticket.note",
        "ticket.reply",
        "ticket.rate",
        "ticket.close",
    } <= actions


def test_internal_notes_are_absent_from_every_customer_response(
    client: TestClient, people: People
) -> None:
    tid = _open(client, people.customer)["id"]
    client.post(
        f"{TICKETS}/{tid}/messages",
        json={"message": SECRET_NOTE, "is_internal": True},
        headers=people.agent,
    )
    responses = [
        client.get(f"{TICKETS}/{tid}", headers=people.customer),
        client.get(TICKETS, headers=people.customer),
        client.get(f"{TICKETS}?status=open", headers=people.customer),
    ]
    for response in responses:
        assert response.status_code == 200
        assert SECRET_NOTE not in response.text
        assert "is_internal" not in response.text
    assert client.get(f"{TICKETS}/{tid}", headers=people.customer).json()["messages"] == []
    # A note does not move the ticket either.
    assert client.get(f"{TICKETS}/{tid}", headers=people.customer).json()["status"] == "open"


def test_another_customers_ticket_is_404_everywhere(client: TestClient, people: People) -> None:
    tid = _open(client, people.customer)["id"]
    for method, path, body in (
        ("GET", f"{TICKETS}/{tid}", None),
        ("POST", f"{TICKETS}/{tid}/messages", {"message": "hi"}),
        ("POST", f"{TICKETS}/{tid}/close", None),
        ("POST", f"{TICKETS}/{tid}/rating", {"rating": 3}),
        ("GET", f"{TICKETS}/{tid}/attachments/{'0' * 32}", None),
    ):
        response = client.request(method, path, json=body, headers=people.stranger)
        assert response.status_code == 404, (method, path, response.text)
    assert client.get(TICKETS, headers=people.stranger).json()["items"] == []


def test_what_a_customer_may_not_do(client: TestClient, people: People) -> None:
    tid = _open(client, people.customer)["id"]
    note = client.post(
        f"{TICKETS}/{tid}/messages",
        json={"message": "let me in", "is_internal": True},
        headers=people.customer,
    )
    assert note.status_code == 403
    assert client.get(QUEUE, headers=people.customer).status_code == 403
    assign = client.patch(
        f"{QUEUE}/{tid}",
        json={"assigned_to": str(people.customer_user.id)},
        headers=people.customer,
    )
    assert assign.status_code == 403
    early = client.post(f"{TICKETS}/{tid}/rating", json={"rating": 4}, headers=people.customer)
    assert early.status_code == 409  # not resolved yet
    # Staff cannot rate for the customer.
    client.post(f"{TICKETS}/{tid}/close", headers=people.agent)
    assert (
        client.post(f"{TICKETS}/{tid}/rating", json={"rating": 5}, headers=people.agent)
    ).status_code == 403
    for bad in ({"rating": 0}, {"rating": 6}, {"rating": "5"}, {"rating": 4.5}, {}):
        response = client.post(f"{TICKETS}/{tid}/rating", json=bad, headers=people.customer)
        assert response.status_code == 422, bad


@pytest.mark.parametrize(
    "body",
    [
        {"subject": "", "description": "x"},
        {"subject": "x" * 256, "description": "x"},
        {"subject": "ok"},
        {"subject": "ok", "description": "x", "category": "nonsense"},
        {"subject": "ok", "description": "x", "priority": "critical"},
        {"subject": "ok", "description": "x", "status": "resolved"},
        {"subject": "ok", "description": "x", "instance_id": "not-a-uuid"},
        {
            "subject": "ok",
            "description": "x",
            "instance_id": "7d0c3f5e-2f9b-4bb5-9d8e-1b1f0f9e3a11",
        },
        {"subject": "ok\u0000", "description": "x"},
    ],
)
def test_invalid_tickets_are_422_and_create_nothing(
    client: TestClient, people: People, body: dict[str, Any]
) -> None:
    response = client.post(TICKETS, json=body, headers=people.customer)
    assert response.status_code == 422, response.text
    assert client.get(TICKETS, headers=people.customer).json()["items"] == []


def test_only_staff_can_be_assigned(client: TestClient, db: Session, people: People) -> None:
    tid = _open(client, people.customer)["id"]
    for user in (people.customer_user, people.stranger_user):
        response = client.patch(
            f"{QUEUE}/{tid}", json={"assigned_to": str(user.id)}, headers=people.admin
        )
        assert response.status_code == 422
    gone = make_user(db, role="support", status="suspended")
    assert (
        client.patch(f"{QUEUE}/{tid}", json={"assigned_to": str(gone.id)}, headers=people.admin)
    ).status_code == 422
    ok = client.patch(
        f"{QUEUE}/{tid}", json={"assigned_to": str(people.admin_user.id)}, headers=people.agent
    )
    assert ok.status_code == 200
    unassigned = client.patch(f"{QUEUE}/{tid}", json={"assigned_to": None}, headers=people.agent)
    assert unassigned.json()["assigned_to"] is None


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], "open"),  # no-op is fine, but…
        (["closed"], "open"),
        (["closed"], "resolved"),
        (["resolved"], "waiting_customer"),
        (["resolved"], "open"),
        (["waiting_customer"], "open"),
    ],
)
def test_illegal_status_changes_are_409(
    client: TestClient, people: People, path: list[str], illegal: str
) -> None:
    tid = _open(client, people.customer)["id"]
    for status in path:
        assert (
            client.patch(f"{QUEUE}/{tid}", json={"status": status}, headers=people.agent)
        ).status_code == 200
    response = client.patch(f"{QUEUE}/{tid}", json={"status": illegal}, headers=people.agent)
    if not path:
        assert response.status_code == 200  # the same status is no change
        return
    assert response.status_code == 409
    assert response.json()["type"].endswith("/invalid-transition")


def test_a_closed_ticket_takes_no_more_replies(client: TestClient, people: People) -> None:
    tid = _open(client, people.customer)["id"]
    client.post(f"{TICKETS}/{tid}/close", headers=people.customer)
    for who in (people.customer, people.agent):
        response = client.post(f"{TICKETS}/{tid}/messages", json={"message": "hi"}, headers=who)
        assert response.status_code == 409


def test_the_queue_filters_and_puts_the_most_urgent_first(
    client: TestClient, db: Session, people: People
) -> None:
    low = _open(client, people.customer, subject="low", priority="low")["id"]
    urgent = _open(client, people.customer, subject="urgent", priority="urgent")["id"]
    normal = _open(client, people.customer, subject="normal")["id"]
    urgent_later = _open(client, people.stranger, subject="urgent 2", priority="urgent")["id"]
    client.patch(
        f"{QUEUE}/{normal}", json={"assigned_to": str(people.agent_user.id)}, headers=people.agent
    )
    order = [t["id"] for t in client.get(QUEUE, headers=people.agent).json()["items"]]
    assert order == [urgent, urgent_later, normal, low]
    page = client.get(f"{QUEUE}?limit=2", headers=people.agent).json()
    rest = client.get(f"{QUEUE}?limit=2&cursor={page['next_cursor']}", headers=people.agent)
    assert [t["id"] for t in page["items"] + rest.json()["items"]] == order

    def ids(query: str) -> list[str]:
        return [
            t["id"] for t in client.get(f"{QUEUE}?{query}", headers=people.agent).json()["items"]
        ]

    assert ids("unassigned=true") == [urgent, urgent_later, low]
    assert ids(f"assigned_to={people.agent_user.id}") == [normal]
    assert ids("priority=low") == [low]
    assert ids("status=in_progress") == []
    assert ids("category=general") == order
    for bad in ("priority=meh", "status=later", "assigned_to=me", "cursor=%%%"):
        assert client.get(f"{QUEUE}?{bad}", headers=people.agent).status_code == 422, bad


def test_a_ticket_may_name_only_the_customers_own_instance(
    client: TestClient, db: Session, people: People
) -> None:
    from tests.factories.compute import make_node, make_pool

    make_node(db)
    make_pool(db, "198.18.9.0/29")
    buyer = make_user(db, balance="10.00")
    headers = bearer(login(client, buyer.username, PASSWORD))
    order = {
        "name": "web",
        "product": "nano",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
    }
    instance_id = client.post("/api/v1/instances", json=order, headers=headers).json()["id"]
    mine = _open(client, headers, instance_id=instance_id)
    assert mine["instance_id"] == instance_id
    theirs = client.post(
        TICKETS,
        json={"subject": "x", "description": "y", "instance_id": instance_id},
        headers=people.customer,
    )
    assert theirs.status_code == 422
    assert db.scalar(select(User).where(User.id == buyer.id)) is not None


def test_resolved_tickets_close_themselves_after_the_quiet_days(
    client: TestClient, db: Session, people: People
) -> None:
    from datetime import timedelta

    from vmcloud.core.clock import utcnow
    from vmcloud.support import service

    quiet = _open(client, people.customer, subject="quiet")["id"]
    answered = _open(client, people.customer, subject="answered")["id"]
    for tid in (quiet, answered):
        client.patch(f"{QUEUE}/{tid}", json={"status": "resolved"}, headers=people.agent)
    # The customer answers one: it reopens, so it is no longer resolved.
    client.post(f"{TICKETS}/{answered}/messages", json={"message": "no!"}, headers=people.customer)
    days = site_settings.get(db, AUTO_CLOSE_DAYS)
    assert service.auto_close(db=db, now=utcnow() + timedelta(days=days - 1)) == 0
    assert service.auto_close(db=db, now=utcnow() + timedelta(days=days, minutes=1)) == 1
    db.commit()  # audit rows are written as the unit of work commits
    statuses = {
        t["id"]: t["status"] for t in client.get(TICKETS, headers=people.customer).json()["items"]
    }
    assert statuses == {quiet: "closed", answered: "open"}
    assert "ticket.auto_close" in db.scalars(select(AuditLog.action)).all()


def test_a_customer_flooding_tickets_is_rate_limited(client: TestClient, people: People) -> None:
    body = {"subject": "spam", "description": "spam"}
    statuses = [
        client.post(TICKETS, json=body, headers=people.customer).status_code for _ in range(11)
    ]
    assert statuses == [201] * 10 + [429]
    # Staff are not limited by the customers' rule.
    assert client.post(TICKETS, json=body, headers=people.agent).status_code == 201


# -- regressions from review -------------------------------------------------------------------


@pytest.mark.parametrize("word", ["yes", "y", "t", "x", "2", ""])
def test_an_unclear_is_internal_is_refused_never_published(
    client: TestClient, people: People, word: str
) -> None:
    tid = _open(client, people.customer)["id"]
    form = client.post(
        f"{TICKETS}/{tid}/messages",
        data={"message": SECRET_NOTE, "is_internal": word},
        files=[("files", ("a.txt", b"log", "text/plain"))],
        headers=people.agent,
    )
    assert form.status_code == 422, form.text
    as_json = client.post(
        f"{TICKETS}/{tid}/messages",
        json={"message": SECRET_NOTE, "is_internal": word},
        headers=people.agent,
    )
    assert as_json.status_code == 422
    assert SECRET_NOTE not in client.get(f"{TICKETS}/{tid}", headers=people.customer).text


def test_a_former_assignee_hears_nothing_and_active_staff_do(
    client: TestClient, db: Session, people: People, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    tid = _open(client, people.customer)["id"]
    client.patch(
        f"{QUEUE}/{tid}", json={"assigned_to": str(people.agent_user.id)}, headers=people.admin
    )
    job_runner.run("support.")
    before = len(mailbox.to("sam@example.com"))
    people.agent_user.role = "customer"  # sam left the support team
    db.flush()
    client.post(
        f"{TICKETS}/{tid}/messages", json={"message": "my password is..."}, headers=people.customer
    )
    job_runner.run("support.")
    assert len(mailbox.to("sam@example.com")) == before
    assert mailbox.to("ada@example.com")[-1]["Subject"].startswith("[VMCloud] Customer reply")


def test_a_subject_must_be_one_line(client: TestClient, people: People) -> None:
    for subject in ("Hi\nBcc: x@evil.com", "Hi\rthere", "tab\there"):
        body = {"subject": subject, "description": "x"}
        assert client.post(TICKETS, json=body, headers=people.customer).status_code == 422


def test_an_internal_note_leaves_no_trace_for_the_customer(
    client: TestClient, people: People
) -> None:
    tid = _open(client, people.customer)["id"]
    before = client.get(f"{TICKETS}/{tid}", headers=people.customer).json()
    client.post(
        f"{TICKETS}/{tid}/messages",
        json={"message": SECRET_NOTE, "is_internal": True},
        headers=people.agent,
    )
    after = client.get(f"{TICKETS}/{tid}", headers=people.customer).json()
    assert after == before


def test_a_message_body_is_not_read_for_an_anonymous_caller(
    client: TestClient, people: People
) -> None:
    tid = _open(client, people.customer)["id"]
    garbage = client.post(
        f"{TICKETS}/{tid}/messages",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert garbage.status_code == 401


def test_the_resolved_email_is_not_sent_for_a_ticket_reopened_meanwhile(
    client: TestClient, people: People, job_runner: JobRunner, mailbox: Mailbox
) -> None:
    tid = _open(client, people.customer)["id"]
    client.patch(f"{QUEUE}/{tid}", json={"status": "resolved"}, headers=people.agent)
    client.post(f"{TICKETS}/{tid}/messages", json={"message": "not yet"}, headers=people.customer)
    job_runner.run("support.")
    assert not [m for m in mailbox.to("alice@example.com") if "Resolved" in m["Subject"]]


def test_refused_tickets_and_replies_do_not_count_against_the_limits(
    client: TestClient, people: People
) -> None:
    unknown = {"subject": "x", "description": "x", "instance_id": str(uuid.uuid4())}
    bad_category = {"subject": "x", "description": "x", "category": "nonsense"}
    for body in [unknown, bad_category] * 6:
        assert client.post(TICKETS, json=body, headers=people.customer).status_code == 422
    tid = _open(client, people.customer)["id"]
    bad_file = [("files", ("run.sh", b"#!/bin/sh\n", "application/x-sh"))]
    for _ in range(60):
        refused = client.post(
            f"{TICKETS}/{tid}/messages",
            data={"message": "see attached"},
            files=bad_file,
            headers=people.customer,
        )
        assert refused.status_code == 422
    reply = {"message": "still there?"}
    answer = client.post(f"{TICKETS}/{tid}/messages", json=reply, headers=people.customer)
    assert answer.status_code == 201
    for _ in range(9):
        _open(client, people.customer)
    answer = client.post(
        TICKETS, json={"subject": "x", "description": "x"}, headers=people.customer
    )
    assert answer.status_code == 429
