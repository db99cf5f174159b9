"""The staff ticket pages (``/admin/tickets``, ``/admin/tickets/{id}``) through the real app:
the queue's filters, assign/status/priority, replies and internal notes (marked, never on the
customer's page), canned replies without JavaScript, files, and refusals that change
nothing."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.support import make_ticket
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts.models import User
from vmcloud.config import Settings
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CANNED_REPLIES
from vmcloud.support import service
from vmcloud.support.models import SupportTicket, TicketMessage
from vmcloud.support.schemas import MessageCreate, TicketAdminUpdate
from vmcloud.support.storage import storage_for
from vmcloud.web.admin import tickets
from vmcloud.web.session import SESSION_COOKIE

NONCE = re.compile(r'name="nonce" value="([0-9a-f]+)"')
NOTE = "Internal: refunded twice already, check with billing"
NOTE_LABEL = "Internal note — customers never see this"


class People:
    def __init__(self, db: Session) -> None:
        self.customer = make_user(db, username=f"cust{uuid.uuid4().hex[:8]}")
        self.agent = make_user(db, role="support", username=f"agent{uuid.uuid4().hex[:8]}")
        self.other_agent = make_user(db, role="admin", username=f"boss{uuid.uuid4().hex[:8]}")


@pytest.fixture
def people(db: Session, panel: TestClient) -> People:
    found = People(db)
    db.commit()
    log_in(panel, found.agent.username, PASSWORD)
    return found


def _ticket(db: Session, user: User, **fields: str) -> SupportTicket:
    ticket = make_ticket(db, user, **fields)
    db.commit()
    return ticket


def _reload(db: Session, ticket: SupportTicket) -> SupportTicket:
    db.expire_all()
    found = db.get(SupportTicket, ticket.id)
    assert found is not None
    return found


def _messages(db: Session, ticket: SupportTicket) -> list[TicketMessage]:
    db.expire_all()
    stmt = select(TicketMessage).where(TicketMessage.ticket_id == ticket.id)
    return list(db.scalars(stmt.order_by(TicketMessage.created_at)))


def _post(panel: TestClient, ticket: SupportTicket, action: str, **data: str) -> object:
    page = panel.get(f"/admin/tickets/{ticket.id}")
    assert page.status_code == 200, page.text[:500]
    form = {"csrftoken": csrf_of(page.text), **data}
    if action == "messages":
        form.setdefault("nonce", NONCE.search(page.text).group(1))  # type: ignore[union-attr]
    return panel.post(f"/admin/tickets/{ticket.id}/{action}", data=form)


def test_the_queue_lists_open_work_with_customer_instance_and_age(
    panel: TestClient, db: Session, people: People
) -> None:
    urgent = _ticket(db, people.customer, subject="Disk gone", priority="urgent")
    normal = _ticket(db, people.customer, subject="Slow network")
    done = _ticket(db, people.customer, subject="Old question")
    service.update_ticket(db=db, ticket=done, body=TicketAdminUpdate(status="resolved"))
    db.commit()

    page = panel.get("/admin/tickets")
    assert page.status_code == 200
    html = page.text
    assert html.index("Disk gone") < html.index("Slow network")  # most urgent first
    assert "Old question" not in html  # the default view is the open work
    assert f'href="/admin/users/{people.customer.id}"' in html and people.customer.username in html
    assert f'href="/admin/tickets/{urgent.id}"' in html and "0 min" in html
    assert 'hx-sse:connect="/admin/tickets/stream?status=open-work' in html

    # The filter form's own query (an empty field is "any"), as the page and its stream send it.
    again = panel.get("/admin/tickets?status=open-work&priority=&assignee=")
    assert again.status_code == 200 and "Disk gone" in again.text
    resolved = panel.get("/admin/tickets?status=resolved").text
    assert "Old question" in resolved and "Disk gone" not in resolved
    assert "Old question" in panel.get("/admin/tickets?status=any").text
    high = panel.get("/admin/tickets?priority=urgent").text
    assert "Disk gone" in high and "Slow network" not in high

    service.update_ticket(db=db, ticket=normal, body=TicketAdminUpdate(assigned_to=people.agent.id))
    db.commit()
    mine = panel.get("/admin/tickets?assignee=me").text
    assert "Slow network" in mine and "Disk gone" not in mine
    nobody = panel.get("/admin/tickets?assignee=none").text
    assert "Disk gone" in nobody and "Slow network" not in nobody
    theirs = panel.get(f"/admin/tickets?assignee={people.other_agent.id}").text
    assert "No tickets here." in theirs


@pytest.mark.parametrize(
    "query", ["status=nope", "priority=meh", "assignee=someone", "assignee=" + "-" * 36]
)
def test_a_bad_filter_is_a_422_page(panel: TestClient, people: People, query: str) -> None:
    answer = panel.get(f"/admin/tickets?{query}", headers={"accept": "text/html"})
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("text/html")


def test_the_streams_render_the_live_regions_by_id(
    panel: TestClient, db: Session, people: People, app_settings: Settings
) -> None:
    ticket = _ticket(db, people.customer, subject="Streamed ticket")
    service.add_message(
        db=db,
        ticket=ticket,
        author=people.agent,
        body=MessageCreate(message=NOTE, is_internal=True),
        uploads=[],
        storage=storage_for(app_settings),
    )
    db.commit()
    raw = panel.cookies.get(SESSION_COOKIE)
    queue = tickets._live_queue(db, raw, status="open-work", priority="", assignee="", cursor=None)
    assert queue is not None
    assert queue.startswith('<section id="ticket-queue" aria-live="polite" hx-swap-oob="true">')
    assert "Streamed ticket" in queue
    detail = tickets._live_ticket(db, raw, ticket.id, "tok")
    assert detail is not None
    for part in ("ticket-status", "ticket-work", "ticket-thread"):
        assert f'id="{part}"' in detail, part
    assert detail.count('hx-swap-oob="true"') == 3 and 'value="tok"' in detail
    assert NOTE in detail and NOTE_LABEL in detail
    assert tickets._live_ticket(db, "not-a-session", ticket.id, "tok") is None


def test_assign_to_me_status_and_priority(panel: TestClient, db: Session, people: People) -> None:
    ticket = _ticket(db, people.customer)
    page = panel.get(f"/admin/tickets/{ticket.id}").text
    assert "Assign to me" in page and "unassigned" in page

    answer = _post(panel, ticket, "update", assigned_to="me")
    assert answer.status_code == 303  # type: ignore[attr-defined]
    assert _reload(db, ticket).assigned_to == people.agent.id
    page = panel.get(f"/admin/tickets/{ticket.id}").text
    assert "assigned to you" in page and "Assign to me" not in page
    assert "Assigned to you." in page  # the flash

    answer = _post(
        panel, ticket, "update", status="waiting_customer", priority="high", assigned_to=""
    )
    assert answer.status_code == 303  # type: ignore[attr-defined]
    found = _reload(db, ticket)
    assert (found.status, found.priority, found.assigned_to) == ("waiting_customer", "high", None)


def test_a_refused_change_is_shown_and_changes_nothing(
    panel: TestClient, db: Session, people: People
) -> None:
    ticket = _ticket(db, people.customer)
    # waiting_customer cannot go back to open: the service's 409.
    _post(panel, ticket, "update", status="waiting_customer")
    refused = _post(panel, ticket, "update", status="open", priority="urgent")
    assert refused.status_code == 409  # type: ignore[attr-defined]
    assert "cannot become open" in refused.text  # type: ignore[attr-defined]
    assert (_reload(db, ticket).status, _reload(db, ticket).priority) == (
        "waiting_customer",
        "normal",
    )
    # Only active staff can be assigned.
    refused = _post(panel, ticket, "update", assigned_to=str(people.customer.id))
    assert refused.status_code == 422  # type: ignore[attr-defined]
    assert "not an active staff member" in refused.text  # type: ignore[attr-defined]
    refused = _post(panel, ticket, "update", assigned_to="not-an-id", priority="bogus")
    assert refused.status_code == 422  # type: ignore[attr-defined]
    assert _reload(db, ticket).assigned_to is None


def test_a_note_is_marked_and_a_reply_reaches_the_customer_page(
    panel: TestClient, db: Session, people: People, app: object
) -> None:
    ticket = _ticket(db, people.customer, subject="Cannot log in")
    assert _post(panel, ticket, "messages", message=NOTE, kind="note").status_code == 303  # type: ignore[attr-defined]
    assert _reload(db, ticket).status == "open"  # a note changes no status
    reply = _post(panel, ticket, "messages", message="Try resetting your password.", kind="reply")
    assert reply.status_code == 303  # type: ignore[attr-defined]
    assert [m.is_internal for m in _messages(db, ticket)] == [True, False]
    assert _reload(db, ticket).status == "in_progress"  # a staff reply takes it up

    staff_page = panel.get(f"/admin/tickets/{ticket.id}").text
    assert NOTE in staff_page and NOTE_LABEL in staff_page
    assert 'class="thread-item from-staff note"' in staff_page
    assert staff_page.count(NOTE_LABEL) == 1  # the reply is not marked

    with TestClient(app, base_url="https://testserver", follow_redirects=False) as customer:  # type: ignore[arg-type]
        log_in(customer, people.customer.username, PASSWORD)
        seen = customer.get(f"/support/{ticket.id}").text
    assert "Try resetting your password." in seen
    assert NOTE not in seen and NOTE_LABEL not in seen


def test_a_message_needs_a_kind_and_text_and_is_sent_once(
    panel: TestClient, db: Session, people: People
) -> None:
    ticket = _ticket(db, people.customer)
    no_kind = _post(panel, ticket, "messages", message="Which one?")
    assert no_kind.status_code == 422  # type: ignore[attr-defined]
    assert "reply or add an internal note" in no_kind.text  # type: ignore[attr-defined]
    assert "Which one?" in no_kind.text  # type: ignore[attr-defined]  # what was typed stays
    bad_kind = _post(panel, ticket, "messages", message="Which one?", kind="public")
    assert bad_kind.status_code == 422  # type: ignore[attr-defined]
    empty = _post(panel, ticket, "messages", message="  ", kind="reply")
    assert empty.status_code == 422  # type: ignore[attr-defined]
    assert "Write a message or choose a canned reply." in empty.text  # type: ignore[attr-defined]
    assert _messages(db, ticket) == []

    nonce = uuid.uuid4().hex
    for _ in range(2):
        sent = _post(panel, ticket, "messages", message="Once.", kind="reply", nonce=nonce)
        assert sent.status_code == 303  # type: ignore[attr-defined]
    assert [m.message for m in _messages(db, ticket)] == ["Once."]


def test_canned_replies_are_offered_and_work_without_javascript(
    panel: TestClient, db: Session, people: People
) -> None:
    canned = site_settings.get(db, CANNED_REPLIES)
    assert len(canned) >= 3  # seeded
    first = canned[0]
    ticket = _ticket(db, people.customer)
    page = panel.get(f"/admin/tickets/{ticket.id}").text
    assert f'<option value="{first["title"]}" data-body="' in page
    assert '<script src="/static/admin-tickets.js" defer></script>' in page

    # Without the script the choice arrives as such: its text is sent (after any typed).
    _post(panel, ticket, "messages", message="", canned=first["title"], kind="reply")
    _post(panel, ticket, "messages", message="Hello,", canned=first["title"], kind="note")
    texts = [m.message for m in _messages(db, ticket)]
    assert texts == [first["body"], f"Hello,\n\n{first['body']}"]

    gone = _post(panel, ticket, "messages", message="", canned="No such reply", kind="reply")
    assert gone.status_code == 422  # type: ignore[attr-defined]
    assert "no longer offered" in gone.text  # type: ignore[attr-defined]
    assert len(_messages(db, ticket)) == 2


def test_a_note_with_a_file_is_served_to_staff_only(
    panel: TestClient, db: Session, people: People, app: object
) -> None:
    ticket = _ticket(db, people.customer)
    page = panel.get(f"/admin/tickets/{ticket.id}").text
    assert 'enctype="multipart/form-data"' in page and "Up to 5 files" in page
    data = {
        "csrftoken": csrf_of(page),  # first: the guard reads it before any file
        "nonce": NONCE.search(page).group(1),  # type: ignore[union-attr]
        "message": NOTE,
        "kind": "note",
    }
    files = [("files", ("trace.txt", b"kernel panic", "text/plain"))]
    answer = panel.post(f"/admin/tickets/{ticket.id}/messages", data=data, files=files)
    assert answer.status_code == 303, answer.text
    page = panel.get(f"/admin/tickets/{ticket.id}").text
    link = re.search(rf'href="(/admin/tickets/{ticket.id}/attachments/([0-9a-f]+))"', page)
    assert link and "trace.txt" in page
    got = panel.get(link.group(1))
    assert got.status_code == 200 and got.content == b"kernel panic"
    assert got.headers["content-disposition"] == 'attachment; filename="trace.txt"'
    assert panel.get(f"/admin/tickets/{ticket.id}/attachments/nope").status_code == 404

    with TestClient(app, base_url="https://testserver", follow_redirects=False) as customer:  # type: ignore[arg-type]
        log_in(customer, people.customer.username, PASSWORD)
        hidden = customer.get(f"/support/{ticket.id}/attachments/{link.group(2)}")
        assert hidden.status_code == 404


def test_an_unknown_ticket_is_404(panel: TestClient, people: People) -> None:
    missing = uuid.uuid4()
    assert panel.get(f"/admin/tickets/{missing}").status_code == 404
    assert panel.get(f"/admin/tickets/{missing}/stream").status_code == 404
    token = csrf_of(panel.get("/account").text)
    answer = panel.post(f"/admin/tickets/{missing}/update", data={"csrftoken": token})
    assert answer.status_code == 404


def test_a_closed_ticket_takes_no_message(panel: TestClient, db: Session, people: People) -> None:
    ticket = _ticket(db, people.customer)
    service.close(db=db, ticket=ticket)
    db.commit()
    page = panel.get(f"/admin/tickets/{ticket.id}").text
    assert "takes no more replies or notes" in page and "Send reply" not in page
    token = csrf_of(page)
    answer = panel.post(
        f"/admin/tickets/{ticket.id}/messages",
        data={"csrftoken": token, "nonce": "abc", "message": "late", "kind": "reply"},
    )
    assert answer.status_code == 409
    assert _messages(db, ticket) == []
