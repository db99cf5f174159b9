"""The audit page (``/admin/audit``, admins only): each row's changes as an old → new table,
who and from where; filters by user, entity, action and time; CSV."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from tests.web.conftest import log_in
from vmcloud.accounts.models import User
from vmcloud.audit import service as audit

PAGE = "/admin/audit"


def signed_in(panel: TestClient, db: Session, role: str = "admin") -> User:
    staff = make_user(db, role=role)
    log_in(panel, staff.username, PASSWORD)
    return staff


def test_a_setting_change_shows_its_old_and_new_value(
    panel: TestClient, client: TestClient, db: Session
) -> None:
    admin = make_user(db, role="admin", email="boss@example.com")
    auth = bearer(login(client, admin.username, PASSWORD))
    changed = client.put(
        "/api/v1/admin/settings/site.name",
        json={"value": "Cloud Nine"},
        headers={**auth, "user-agent": "settings-script/1.0"},
    )
    assert changed.status_code == 200, changed.text
    signed_in(panel, db)

    page = panel.get(PAGE, params={"entity": "setting", "action": "setting.update"})
    assert page.status_code == 200, page.text
    assert page.text.count('class="audit-entry"') == 1
    assert '<tr data-field="value"><th scope="row">value</th>' in page.text
    assert "<del>VMCloud</del>" in page.text and "<ins>Cloud Nine</ins>" in page.text
    assert "boss@example.com" in page.text
    assert "settings-script/1.0" in page.text

    by_user = panel.get(PAGE, params={"user": "BOSS@example.com", "action": "setting.update"})
    assert by_user.text.count('class="audit-entry"') == 1
    later = panel.get(PAGE, params={"action": "setting.update", "since": "2999-01-01T00:00"})
    assert 'class="audit-entry"' not in later.text and "No rows match." in later.text


def test_bad_filters_are_422_and_list_nothing(panel: TestClient, db: Session) -> None:
    signed_in(panel, db)
    page = panel.get(
        PAGE, params={"user": "ghost", "entity_id": "nope", "since": "tomorrow", "until": "x"}
    )
    assert page.status_code == 422
    for message in (
        "No user has this email, username or id.",
        "An id like",
        "A time like 2026-01-31T14:30 (UTC).",
    ):
        assert message in page.text
    assert 'class="audit-entry"' not in page.text
    assert panel.get(PAGE, params={"cursor": "garbage"}).status_code == 422
    zoned = panel.get(PAGE, params={"since": "2026-01-01T00:00+02:00"})
    assert zoned.status_code == 422


def test_the_csv_has_the_filtered_rows_and_is_formula_safe(panel: TestClient, db: Session) -> None:
    audit.record(db=db, action="=cmd|calc", extra={"note": "x"})
    audit.record(db=db, action="user.logout")
    signed_in(panel, db)
    answer = panel.get(f"{PAGE}.csv", params={"action": "=cmd|calc"})
    assert answer.status_code == 200
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["action"] for row in rows] == ["'=cmd|calc"]


def test_support_may_not_open_it(panel: TestClient, db: Session) -> None:
    signed_in(panel, db, "support")
    assert panel.get(PAGE).status_code == 403
    assert panel.get(f"{PAGE}.csv").status_code == 403
