"""Saved SSH keys: validation and fingerprints (as ``ssh-keygen -l`` prints them), the
/me/ssh-keys API, its audit rows, and ordering an instance with saved keys (they reach the
NoCloud seed)."""

from __future__ import annotations

import base64
import struct
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node, make_pool
from tests.helpers import JobRunner, bearer, login
from vmcloud.accounts import ssh_keys
from vmcloud.accounts.models import SshKey
from vmcloud.audit.models import AuditLog
from vmcloud.compute import nodes
from vmcloud.compute.drivers.fake import FakeDriver
from vmcloud.compute.models import Instance

KEYS = "/api/v1/me/ssh-keys"
# Made with ssh-keygen; the fingerprints are what `ssh-keygen -l -E sha256 -f key.pub` prints.
ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIvuUyIYVyYK8sWRh3z77v/6CSjUtGd6wFsvOrhyrw99 alice@laptop"
)
ED25519_FP = "SHA256:hIMuox6gWi7p+ghFyrWyBQzODz4lA9Q/tgSRdj6DGoI"
ECDSA384 = (
    "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBJgjdRrKRMqVPpTSw6"
    "MwUWPsR+sgUkBFzwsjSq9VvYVdX6crCpwXSQvS/sDSIZvQg50VuIgcSd5p5jgJio2yXnEwns7G0a+A45T5Zk55mNr"
    "OCmdjdrpPfzl407C25trMqw== ci"
)
ECDSA384_FP = "SHA256:7c/t2QFm6vgwpWJX6iBP4/m2lsYwFQkSzqxekg7w8pI"
RSA2048 = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCfBZYBDJTJLyfbdcQ7On3x6P9zTNRb2Ddx0YVbSJPs5C6FWSiMMhi"
    "w2vzIEZVEhIqc/bLUNTUOXqWeCMVenuvog7Gd+CBexycOzw+H/r4ZkZW825ovk1A8AdTRDonhDZVIvX32tqo/YbPmI"
    "E1Ww9lAQyZNpRIiI8iremTHIBCUuCZh39KuKMyfA7IZKq35fBeaZ8b7F7xjWFW0IaoV7F6QRSciEgK3Rptvlihget5"
    "N6eOV5UBtIcZhGWW+2Cj7sAdFbd45KrqlCx+mtdn+SsV4XFfmElnmNDahe2bcCVLVf53OJFvlsiEeax6m2lux96eHG"
    "qfqGOKV9S+jue1sZIcH old"
)
RSA2048_FP = "SHA256:6uzXmFOxg7uI6gwrK1zNkx0sVUJT5a0eshz3e0uHo3s"
RSA1024 = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDfUAyzc6TiMbxKEodefDSouWp2OqJtWw26RmSjwyY7Yeq/POfv9Qqp"
    "EMTbZDJwr7F+HOaI+ss1b8gwu2wypsFOieyDSTNPoAS9eqJY7izWiUYBZLbD8VYLuGkuXOFjTx+SY9HRpn/YpZI/VK"
    "q7Op7hEI42Eh5sdw+29v0PHtQv9Q== root@vm"
)


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _sk_ed25519() -> str:
    blob = _string(b"sk-ssh-ed25519@openssh.com") + _string(b"\x01" * 32) + _string(b"ssh:")
    return "sk-ssh-ed25519@openssh.com " + base64.b64encode(blob).decode() + " yubikey"


@pytest.mark.parametrize(
    ("text", "fingerprint"),
    [(ED25519, ED25519_FP), (ECDSA384, ECDSA384_FP), (RSA2048, RSA2048_FP)],
)
def test_fingerprints_are_those_of_ssh_keygen(text: str, fingerprint: str) -> None:
    line, found = ssh_keys.parse_public_key("  " + text + "\n")
    assert found == fingerprint
    assert line == text


def test_a_security_key_is_accepted_by_its_layout() -> None:
    line, fingerprint = ssh_keys.parse_public_key(_sk_ed25519())
    assert line.startswith("sk-ssh-ed25519@openssh.com ") and fingerprint.startswith("SHA256:")


def test_a_key_without_a_comment_is_kept_without_one() -> None:
    bare = " ".join(ED25519.split()[:2])
    assert ssh_keys.parse_public_key(bare) == (bare, ED25519_FP)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "one line"),
        (ED25519 + "\n" + RSA2048, "one line"),
        ("ssh-ed25519", "<type>"),
        ("ssh-dss AAAAB3NzaC1kc3M=", "not accepted"),
        ("ssh-ed25519 not*base64", "base64"),
        # an ed25519 blob presented as an RSA key
        ("ssh-rsa " + ED25519.split()[1], "does not match"),
        ("ssh-ed25519 " + base64.b64encode(_string(b"ssh-ed25519")).decode(), "not a valid key"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIvu", "truncated"),
        (RSA1024, "2048 bits"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "not accepted"),
    ],
)
def test_invalid_keys_are_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(ssh_keys.InvalidKeyError, match=why):
        ssh_keys.parse_public_key(text)


@pytest.fixture
def owner(client: TestClient, db: Session) -> dict[str, str]:
    user = make_user(db, balance="100.00", username="key-owner")
    return bearer(login(client, user.username, PASSWORD))


def test_a_key_is_saved_listed_and_removed_with_audit_rows(
    client: TestClient, db: Session, owner: dict[str, str]
) -> None:
    saved = client.post(KEYS, json={"name": "laptop", "public_key": ED25519}, headers=owner)
    assert saved.status_code == 201, saved.text
    key = saved.json()
    assert (key["name"], key["fingerprint"], key["public_key"]) == ("laptop", ED25519_FP, ED25519)
    listed = client.get(KEYS, headers=owner).json()
    assert [k["id"] for k in listed] == [key["id"]]

    removed = client.delete(f"{KEYS}/{key['id']}", headers=owner)
    assert removed.status_code == 204
    assert client.get(KEYS, headers=owner).json() == []
    assert client.delete(f"{KEYS}/{key['id']}", headers=owner).status_code == 404
    actions = db.scalars(
        select(AuditLog.action).where(AuditLog.entity_id == uuid.UUID(key["id"]))
    ).all()
    assert sorted(actions) == ["ssh_key.create", "ssh_key.delete"]


def test_a_duplicate_key_is_409_and_a_bad_one_422_naming_the_field(
    client: TestClient, db: Session, owner: dict[str, str]
) -> None:
    assert client.post(KEYS, json={"name": "a", "public_key": ED25519}, headers=owner).is_success
    again = client.post(KEYS, json={"name": "b", "public_key": ED25519 + "x"}, headers=owner)
    assert again.status_code == 409, again.text
    bad = client.post(KEYS, json={"name": "c", "public_key": RSA1024}, headers=owner)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "public_key"
    assert len(client.get(KEYS, headers=owner).json()) == 1


def test_the_key_limit_is_409(
    client: TestClient, db: Session, owner: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh_keys, "MAX_KEYS_PER_USER", 1)
    assert client.post(KEYS, json={"name": "a", "public_key": ED25519}, headers=owner).is_success
    refused = client.post(KEYS, json={"name": "b", "public_key": RSA2048}, headers=owner)
    assert refused.status_code == 409


def test_another_users_key_cannot_be_removed(
    client: TestClient, db: Session, owner: dict[str, str]
) -> None:
    other = make_user(db)
    theirs = SshKey(user_id=other.id, name="x", public_key=ED25519, fingerprint=ED25519_FP)
    db.add(theirs)
    db.flush()
    assert client.delete(f"{KEYS}/{theirs.id}", headers=owner).status_code == 404
    assert client.get(KEYS, headers=owner).json() == []
    assert db.get(SshKey, theirs.id) is not None


def _order(client: TestClient, headers: dict[str, str], **extra: object) -> Any:
    body = {
        "name": "keyed",
        "product": "nano",
        "region": "local",
        "image": "tiny-linux",
        "billing_cycle": "monthly",
        **extra,
    }
    return client.post("/api/v1/instances", json=body, headers=headers)


def test_saved_keys_reach_the_new_instances_seed(
    client: TestClient, db: Session, owner: dict[str, str], job_runner: JobRunner
) -> None:
    node = make_node(db)
    make_pool(db, "198.18.9.0/29")
    key = client.post(KEYS, json={"name": "laptop", "public_key": ED25519}, headers=owner).json()
    created = _order(client, owner, ssh_key_ids=[key["id"]], ssh_keys=[RSA2048])
    assert created.status_code == 202, created.text
    instance_id = uuid.UUID(created.json()["id"])
    job_runner.run("compute.")
    driver = nodes.driver_for(node)
    assert isinstance(driver, FakeDriver)
    assert driver.vms[instance_id].spec.ssh_keys == (RSA2048, ED25519)


def test_another_users_key_id_refuses_the_order(
    client: TestClient, db: Session, owner: dict[str, str]
) -> None:
    make_node(db)
    make_pool(db, "198.18.9.0/29")
    other = make_user(db)
    theirs = SshKey(user_id=other.id, name="x", public_key=ED25519, fingerprint=ED25519_FP)
    db.add(theirs)
    db.flush()
    refused = _order(client, owner, ssh_key_ids=[str(theirs.id)])
    assert refused.status_code == 422
    problem = refused.json()
    assert problem["errors"][0]["field"] == "ssh_key_ids"
    assert _order(client, owner, ssh_key_ids=[str(uuid.uuid4())]).status_code == 422


@pytest.mark.parametrize(
    "text",
    [
        RSA1024,  # too short for a saved key: too short for an order too
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIvu",  # truncated
        "ssh-rsa " + ED25519.split()[1],  # a blob of another type
        "ssh-dss AAAAB3NzaC1kc3M=",
    ],
)
def test_one_off_keys_are_checked_as_saved_keys_are(
    client: TestClient, db: Session, owner: dict[str, str], text: str
) -> None:
    make_node(db)
    make_pool(db, "198.18.9.0/29")
    refused = _order(client, owner, ssh_keys=[text])
    assert refused.status_code == 422, refused.text
    assert "ssh_keys" in refused.text
    assert db.scalar(select(func.count(Instance.id))) == 0


def test_one_off_keys_are_stored_normalised(
    client: TestClient, db: Session, owner: dict[str, str]
) -> None:
    make_node(db)
    make_pool(db, "198.18.9.0/29")
    created = _order(client, owner, ssh_keys=["  " + ED25519.replace(" ", "   ") + " "])
    assert created.status_code == 202, created.text


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_a_personal_token_cannot_add_or_remove_keys(
    client: TestClient, owner: dict[str, str], method: str
) -> None:
    body = {"name": "ci", "scopes": ["account:write"]}
    secret = client.post("/api/v1/me/tokens", json=body, headers=owner).json()["token"]
    saved = client.post(KEYS, json={"name": "a", "public_key": ED25519}, headers=owner).json()
    token = {"Authorization": f"Bearer {secret}"}
    if method == "POST":
        refused = client.post(KEYS, json={"name": "b", "public_key": RSA2048}, headers=token)
    else:
        refused = client.delete(f"{KEYS}/{saved['id']}", headers=token)
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"].endswith("/login-required")
    assert [k["id"] for k in client.get(KEYS, headers=token).json()] == [saved["id"]]
