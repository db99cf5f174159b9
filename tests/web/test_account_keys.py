"""The SSH keys and API tokens pages: save and remove keys (fingerprint shown, errors next to
the field), pick saved keys in the order form, make a token (its secret shown once), revoke
it; the token made here works against the API until revoked."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.accounts.test_ssh_keys import ED25519, ED25519_FP, RSA1024, RSA2048
from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node, make_pool
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts.models import ApiToken, SshKey, User
from vmcloud.compute.models import Instance

KEYS = "/account/ssh-keys"
TOKENS = "/account/tokens"
NONCE = re.compile(r'name="nonce" value="([^"]+)"')
SECRET = re.compile(r'id="new-token-secret">(vmc_pat_[A-Za-z0-9_-]+)<')


def _user(panel: TestClient, db: Session, **options: Any) -> User:
    user = make_user(db, balance="100.00", **options)
    log_in(panel, user.username, PASSWORD)
    return user


def _form(panel: TestClient, page: str) -> dict[str, str]:
    html = panel.get(page).text
    nonce = NONCE.search(html)
    return {"csrftoken": csrf_of(html), **({"nonce": nonce.group(1)} if nonce else {})}


def _keys(db: Session, user: User) -> list[SshKey]:
    db.expire_all()
    return list(db.scalars(select(SshKey).where(SshKey.user_id == user.id)))


def test_the_pages_need_a_login_and_are_in_the_account_navigation(
    panel: TestClient, db: Session
) -> None:
    for path in (KEYS, TOKENS):
        answer = panel.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    _user(panel, db)
    for path in ("/account", "/account/security", KEYS, TOKENS):
        page = panel.get(path)
        assert page.status_code == 200
        assert f'href="{KEYS}"' in page.text and f'href="{TOKENS}"' in page.text
        assert f'href="{path}" aria-current="page"' in page.text


def test_a_key_is_saved_once_and_shown_with_its_fingerprint(panel: TestClient, db: Session) -> None:
    user = _user(panel, db)
    data = {**_form(panel, KEYS), "name": "laptop", "public_key": ED25519}
    first = panel.post(KEYS, data=data)
    second = panel.post(KEYS, data=data)  # a double submit
    assert first.status_code == second.status_code == 303
    assert len(_keys(db, user)) == 1
    page = panel.get(KEYS).text
    assert ED25519_FP in page and "laptop" in page


@pytest.mark.parametrize(
    ("key", "status", "says"), [(RSA1024, 422, "2048 bits"), ("hello", 422, "base64 data")]
)
def test_a_bad_key_is_refused_next_to_the_field(
    panel: TestClient, db: Session, key: str, status: int, says: str
) -> None:
    user = _user(panel, db)
    answer = panel.post(KEYS, data={**_form(panel, KEYS), "name": "x", "public_key": key})
    assert answer.status_code == status
    assert 'id="e-public_key"' in answer.text and says in answer.text.replace("&lt;", "<")
    assert _keys(db, user) == []


def test_a_duplicate_key_is_409_with_the_saved_name(panel: TestClient, db: Session) -> None:
    _user(panel, db)
    panel.post(KEYS, data={**_form(panel, KEYS), "name": "laptop", "public_key": ED25519})
    again = panel.post(KEYS, data={**_form(panel, KEYS), "name": "b", "public_key": ED25519})
    assert again.status_code == 409 and "already saved" in again.text


def test_removing_a_key_needs_its_name(panel: TestClient, db: Session) -> None:
    user = _user(panel, db)
    panel.post(KEYS, data={**_form(panel, KEYS), "name": "laptop", "public_key": ED25519})
    (key,) = _keys(db, user)
    wrong = panel.post(f"{KEYS}/{key.id}/delete", data={**_form(panel, KEYS), "confirm_name": "x"})
    assert wrong.status_code == 422 and len(_keys(db, user)) == 1
    done = panel.post(
        f"{KEYS}/{key.id}/delete", data={**_form(panel, KEYS), "confirm_name": "laptop"}
    )
    assert done.status_code == 303 and _keys(db, user) == []
    assert panel.post(f"{KEYS}/not-an-id/delete", data=_form(panel, KEYS)).status_code in (
        404,
        422,
    )


def test_the_order_form_ticks_saved_keys_and_orders_with_the_ticked_ones(
    panel: TestClient, db: Session
) -> None:
    make_node(db)
    make_pool(db, "198.18.9.0/28")
    user = _user(panel, db)
    assert "no saved keys" in panel.get("/instances/new").text
    for name, text in (("laptop", ED25519), ("ci", RSA2048)):
        panel.post(KEYS, data={**_form(panel, KEYS), "name": name, "public_key": text})
    laptop, ci = sorted(_keys(db, user), key=lambda k: k.name != "laptop")
    page = panel.get("/instances/new").text
    assert page.count('name="ssh_key_ids"') == 2 and page.count(" checked>") >= 2
    data = {
        **_form(panel, "/instances/new"),
        "name": "web-1",
        "product": "nano",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
        "keys_shown": "1",
        "ssh_key_ids": [str(laptop.id)],
    }
    answer = panel.post("/instances/new", data=data)
    assert answer.status_code == 303, answer.text
    instance = db.scalars(select(Instance).where(Instance.user_id == user.id)).one()
    assert instance.metadata_json is not None
    assert instance.metadata_json["ssh_keys"] == [ED25519]
    # Another user's key id is refused next to the picker, and nothing is ordered.
    theirs = SshKey(user_id=make_user(db).id, name="x", public_key=RSA2048, fingerprint="SHA256:x")
    db.add(theirs)
    db.flush()
    refused = panel.post(
        "/instances/new",
        data={**data, **_form(panel, "/instances/new"), "ssh_key_ids": [str(theirs.id)]},
    )
    assert refused.status_code == 422 and "not among your keys" in refused.text
    assert ci.id  # saved, not chosen
    assert len(db.scalars(select(Instance).where(Instance.user_id == user.id)).all()) == 1


def _make_token(panel: TestClient, **fields: str) -> Any:
    data = {**_form(panel, TOKENS), "name": "deploy", "expires": "30", **fields}
    return panel.post(TOKENS, data=data), data


def test_a_token_is_shown_once_works_and_stops_when_revoked(
    panel: TestClient, client: TestClient, db: Session
) -> None:
    user = _user(panel, db)
    made, data = _make_token(panel, scope_account="read", scope_instances="write")
    assert made.status_code == 200
    found = SECRET.search(made.text)
    assert found and 'data-copy="' + found.group(1) in made.text
    secret = found.group(1)
    api = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/me", headers=api).status_code == 200
    assert client.patch("/api/v1/me", json={"first_name": "X"}, headers=api).status_code == 403

    listed = panel.get(TOKENS).text
    assert "deploy" in listed and secret not in listed
    replay = panel.post(TOKENS, data=data)
    assert replay.status_code == 303 and secret not in replay.text
    assert len(db.scalars(select(ApiToken).where(ApiToken.user_id == user.id)).all()) == 1

    token = db.scalars(select(ApiToken).where(ApiToken.user_id == user.id)).one()
    url = f"{TOKENS}/{token.id}/revoke"
    assert panel.post(url, data={**_form(panel, TOKENS), "confirm_name": "x"}).status_code == 422
    assert client.get("/api/v1/me", headers=api).status_code == 200
    revoked = panel.post(url, data={**_form(panel, TOKENS), "confirm_name": "deploy"})
    assert revoked.status_code == 303
    assert client.get("/api/v1/me", headers=api).status_code == 401
    assert f'id="token-{token.id}"' not in panel.get(TOKENS).text


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "e-scopes"),
        ({"scope_account": "all"}, "e-scopes"),
        ({"scope_admin": "read"}, "choose among"),
        ({"scope_account": "read", "expires": "date", "expires_on": "soon"}, "e-expires_on"),
        ({"scope_account": "read", "expires": "date", "expires_on": "2001-01-01"}, "future"),
        ({"scope_account": "read", "name": ""}, "e-name"),
    ],
)
def test_a_bad_token_form_is_refused_and_makes_nothing(
    panel: TestClient, db: Session, fields: dict[str, str], field: str
) -> None:
    user = _user(panel, db)
    answer, _ = _make_token(panel, **fields)
    assert answer.status_code == 422, answer.text[:500]
    assert field in answer.text
    assert db.scalars(select(ApiToken).where(ApiToken.user_id == user.id)).all() == []


def test_only_staff_are_offered_the_admin_scope(panel: TestClient, db: Session) -> None:
    _user(panel, db)
    assert 'name="scope_admin"' not in panel.get(TOKENS).text
    staff = make_user(db, role="support")
    log_in(panel, staff.username, PASSWORD)
    assert 'name="scope_admin"' in panel.get(TOKENS).text
