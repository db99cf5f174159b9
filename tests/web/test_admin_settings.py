"""Page 22, ``/admin/settings``: each setting with the widget its declaration calls for; a
value the service refuses is shown next to its field with the 4xx and changes nothing;
turning registration off closes sign-up."""

from __future__ import annotations

import html
import json
import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.web.conftest import csrf_of, log_in
from vmcloud.audit.models import AuditLog
from vmcloud.site_settings.models import Setting


def _admin(panel: TestClient, db: Session) -> str:
    admin = make_user(db, role="admin")
    log_in(panel, admin.username, PASSWORD)
    return csrf_of(panel.get("/admin/settings").text)


def _form(html: str, key: str) -> str:
    found = re.search(rf'<form [^>]*id="s-{re.escape(key)}".*?</form>', html, re.S)
    assert found, key
    return found.group(0)


def test_each_setting_has_the_widget_for_its_type(panel: TestClient, db: Session) -> None:
    _admin(panel, db)
    html = panel.get("/admin/settings").text
    assert 'id="group-billing"' in html and 'id="group-auth"' in html
    assert 'type="checkbox"' in _form(html, "auth.registration_enabled")
    assert "checked" in _form(html, "auth.registration_enabled")
    grace = _form(html, "billing.grace_days")
    assert 'type="number"' in grace and 'min="0"' in grace and 'max="365"' in grace
    assert 'step="1"' in grace
    assert 'step="0.01"' in _form(html, "billing.topup_min")
    placement = _form(html, "compute.placement")
    assert "<select" in placement and '<option value="pack"' in placement
    assert "<textarea" in _form(html, "support.categories")
    assert 'type="text"' in _form(html, "site.name")
    assert "public" in _form(html, "site.name")  # the public flag


def test_turning_registration_off_closes_sign_up(panel: TestClient, db: Session) -> None:
    token = _admin(panel, db)
    answer = panel.post("/admin/settings/auth.registration_enabled", data={"csrftoken": token})
    assert answer.status_code == 303, answer.text
    row = db.get(Setting, "auth.registration_enabled")
    assert row is not None and row.value == "false"
    assert "checked" not in _form(panel.get("/admin/settings").text, "auth.registration_enabled")
    panel.cookies.clear()
    closed = panel.get("/signup")
    assert closed.status_code == 403


def test_a_refused_value_is_shown_next_to_its_field(panel: TestClient, db: Session) -> None:
    token = _admin(panel, db)
    audit = db.scalar(select(func.count()).select_from(AuditLog))
    for value in ("1000", "abc", "2.5"):
        answer = panel.post(
            "/admin/settings/billing.grace_days", data={"value": value, "csrftoken": token}
        )
        assert answer.status_code == 422, value
        form = _form(answer.text, "billing.grace_days")
        assert 'aria-invalid="true"' in form and 'class="field-error"' in form
        assert f'value="{value}"' in form  # what was typed stays
    row = db.get(Setting, "billing.grace_days")
    assert row is not None and row.value == "7"
    assert db.scalar(select(func.count()).select_from(AuditLog)) == audit


def test_lists_numbers_and_choices_are_saved_typed(panel: TestClient, db: Session) -> None:
    token = _admin(panel, db)
    saves = {
        "support.categories": "Billing\nTechnical\n\nAbuse",
        "billing.topup_min": "7.5",
        "compute.placement": "pack",
    }
    for key, value in saves.items():
        answer = panel.post(f"/admin/settings/{key}", data={"value": value, "csrftoken": token})
        assert answer.status_code == 303, (key, answer.text[:500])
    assert db.get(Setting, "support.categories").value == '["Billing","Technical","Abuse"]'  # type: ignore[union-attr]
    assert db.get(Setting, "billing.topup_min").value == "7.50"  # type: ignore[union-attr]
    assert db.get(Setting, "compute.placement").value == "pack"  # type: ignore[union-attr]
    duplicate = panel.post(
        "/admin/settings/support.categories", data={"value": "A\nA", "csrftoken": token}
    )
    assert duplicate.status_code == 422
    assert "unique" in _form(duplicate.text, "support.categories")


def test_an_unknown_setting_is_404(panel: TestClient, db: Session) -> None:
    token = _admin(panel, db)
    answer = panel.post("/admin/settings/no.such.key", data={"value": "x", "csrftoken": token})
    assert answer.status_code == 404


def test_an_undeclared_json_setting_is_edited_as_json(panel: TestClient, db: Session) -> None:
    db.add(Setting(key="custom.limits", value='{"a":1}', type="json", category="custom"))
    db.flush()
    token = _admin(panel, db)
    form = _form(panel.get("/admin/settings").text, "custom.limits")
    assert "<textarea" in form and "&#34;a&#34;: 1" in form
    bad = panel.post("/admin/settings/custom.limits", data={"value": "{a:", "csrftoken": token})
    assert bad.status_code == 422
    assert "not JSON" in _form(bad.text, "custom.limits")
    good = panel.post(
        "/admin/settings/custom.limits", data={"value": '{"a": 2}', "csrftoken": token}
    )
    assert good.status_code == 303
    db.expire_all()
    assert db.get(Setting, "custom.limits").value == '{"a":2}'  # type: ignore[union-attr]


def test_json_the_service_cannot_store_is_refused(panel: TestClient, db: Session) -> None:
    db.add(Setting(key="custom.limits", value='{"a":1}', type="json", is_public=True))
    db.flush()
    token = _admin(panel, db)
    for typed in ['{"a": NaN}', '{"a": -Infinity}', '"\\ud800"', '"\\u0000"', "[" * 30000]:
        answer = panel.post(
            "/admin/settings/custom.limits", data={"value": typed, "csrftoken": token}
        )
        assert answer.status_code == 422, typed[:20]
    deep = "[" * 30000 + "]" * 30000
    answer = panel.post("/admin/settings/custom.limits", data={"value": deep, "csrftoken": token})
    assert answer.status_code == 422 and "not JSON" in _form(answer.text, "custom.limits")
    db.expire_all()
    assert db.get(Setting, "custom.limits").value == '{"a":1}'  # type: ignore[union-attr]
    assert panel.get("/api/v1/settings/public").json()["custom.limits"] == {"a": 1}


def test_a_list_of_objects_is_edited_as_json(panel: TestClient, db: Session) -> None:
    token = _admin(panel, db)
    key = "support.canned_replies"
    panel.post(f"/admin/settings/{key}", data={"value": "[]", "csrftoken": token})
    replies = [{"title": "Hi", "body": "Hello there"}]
    saved = panel.post(
        f"/admin/settings/{key}", data={"value": json.dumps(replies), "csrftoken": token}
    )
    assert saved.status_code == 303, saved.text
    form = _form(panel.get("/admin/settings").text, key)
    shown = html.unescape(re.search(r"<textarea[^>]*>(.*?)</textarea>", form, re.S).group(1))  # type: ignore[union-attr]
    assert json.loads(shown) == replies
    assert (
        panel.post(f"/admin/settings/{key}", data={"value": shown, "csrftoken": token}).status_code
        == 303
    )
    changed = [{"title": "A", "body": "B"}]
    answer = panel.post(
        f"/admin/settings/{key}", data={"value": json.dumps(changed), "csrftoken": token}
    )
    assert answer.status_code == 303
    db.expire_all()
    assert json.loads(db.get(Setting, key).value) == changed  # type: ignore[union-attr]
    assert (
        panel.post(f"/admin/settings/{key}", data={"value": "A", "csrftoken": token}).status_code
        == 422
    )
