"""Saved SSH public keys: validated, fingerprinted as ``ssh-keygen -l`` does, and put into the
NoCloud seed of the instances they are chosen for.

A key is one OpenSSH line: ``<type> <base64 blob> [comment]``. The blob must decode, start with
its own type, and hold a key ``cryptography`` can load (security keys, ``sk-…``, are checked by
their layout instead: ``cryptography`` does not load them). RSA keys need 2048 to 16384 bits,
a comment at most 200 characters; DSA keys are refused (OpenSSH itself no longer accepts them).
Whatever the parser refuses, however it refuses it, is an :class:`InvalidKeyError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import uuid
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vmcloud.accounts.models import SshKey, User
from vmcloud.accounts.service import lock_user
from vmcloud.core.errors import ConflictError, InvalidInputError, NotFoundError

MAX_KEYS_PER_USER = 50
MAX_KEY_LENGTH = 16_384
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16_384  # as OpenSSH
MAX_COMMENT = 200
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


class InvalidKeyError(ValueError):
    """Why a text is not a public key we accept (the message is shown to the user)."""


def _strings(blob: bytes) -> list[bytes]:
    """The blob's length-prefixed fields (RFC 4251 ``string``s)."""
    fields, at = [], 0
    while at < len(blob):
        if at + 4 > len(blob):
            raise InvalidKeyError("the key data is truncated")
        (size,) = struct.unpack(">I", blob[at : at + 4])
        if at + 4 + size > len(blob):
            raise InvalidKeyError("the key data is truncated")
        fields.append(blob[at + 4 : at + 4 + size])
        at += 4 + size
    return fields


def _check_security_key(kind: str, fields: list[bytes]) -> None:
    if kind == "sk-ssh-ed25519@openssh.com":
        ok = len(fields) == 3 and len(fields[1]) == 32 and fields[2].startswith(b"ssh:")
    else:
        ok = len(fields) == 4 and fields[1] == b"nistp256" and len(fields[2]) == 65
        ok = ok and fields[2][:1] == b"\x04" and fields[3].startswith(b"ssh:")
    if not ok:
        raise InvalidKeyError("the security key's data is not valid")


def parse_public_key(text: str) -> tuple[str, str]:
    """The key normalised to one line (``type blob [comment]``) and its fingerprint
    (``SHA256:`` and the unpadded base64 of the blob's SHA-256), or :class:`InvalidKeyError`."""
    line = text.strip()
    if not line or len(line) > MAX_KEY_LENGTH or "\n" in line or "\r" in line or "\0" in line:
        raise InvalidKeyError("paste one public key, on one line (the contents of a .pub file)")
    parts = line.split(None, 2)
    if len(parts) < 2:
        raise InvalidKeyError("a public key is '<type> <base64 data> [comment]'")
    kind, data = parts[0], parts[1]
    if kind not in KEY_TYPES:
        accepted = ", ".join(KEY_TYPES)
        raise InvalidKeyError(f"key type {kind[:40]!r} is not accepted; use {accepted}")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKeyError("the key data is not valid base64") from None
    fields = _strings(blob)
    if not fields or fields[0] != kind.encode():
        raise InvalidKeyError("the key data does not match its type")
    if kind.startswith("sk-"):
        _check_security_key(kind, fields)
    else:
        # Any refusal of the parser is a bad key: ValueError, but also NotImplementedError
        # for a compressed elliptic-curve point, and whatever another version may raise.
        try:
            key = load_ssh_public_key(f"{kind} {data}".encode())
        except Exception:
            raise InvalidKeyError("the key data is not a valid key") from None
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise InvalidKeyError(f"RSA keys need at least {MIN_RSA_BITS} bits")
        if isinstance(key, rsa.RSAPublicKey) and key.key_size > MAX_RSA_BITS:
            raise InvalidKeyError(f"RSA keys may have at most {MAX_RSA_BITS} bits")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    comment = parts[2].strip() if len(parts) == 3 else ""
    if len(comment) > MAX_COMMENT:
        raise InvalidKeyError(f"the comment may be at most {MAX_COMMENT} characters")
    return " ".join(p for p in (kind, data, comment) if p), f"SHA256:{digest}"


def list_keys(*, db: Session, user: User) -> list[SshKey]:
    stmt = select(SshKey).where(SshKey.user_id == user.id).order_by(SshKey.created_at, SshKey.id)
    return list(db.scalars(stmt))


def add_key(*, db: Session, user: User, name: str, public_key: str) -> SshKey:
    try:
        line, fingerprint = parse_public_key(public_key)
    except InvalidKeyError as exc:
        raise InvalidInputError(
            "This is not a public key we accept.",
            errors=[{"field": "public_key", "message": str(exc)}],
        ) from None
    lock_user(db=db, user_id=user.id)  # the count and the duplicate check hold until commit
    count = db.scalar(select(func.count(SshKey.id)).where(SshKey.user_id == user.id)) or 0
    if count >= MAX_KEYS_PER_USER:
        raise ConflictError(f"An account may save {MAX_KEYS_PER_USER} SSH keys; remove one first.")
    same = select(SshKey.name).where(SshKey.user_id == user.id, SshKey.fingerprint == fingerprint)
    existing = db.scalar(same)
    if existing is not None:
        raise ConflictError(
            f"This key is already saved, as {existing!r}.",
            errors=[{"field": "public_key", "message": "already saved"}],
        )
    key = SshKey(user_id=user.id, name=name, public_key=line, fingerprint=fingerprint)
    db.add(key)
    db.flush()
    return key


def get_key(*, db: Session, user: User, key_id: uuid.UUID) -> SshKey:
    """One of the user's keys; anyone else's, or a missing one, is 404."""
    key = db.scalar(select(SshKey).where(SshKey.id == key_id, SshKey.user_id == user.id))
    if key is None:
        raise NotFoundError("No such SSH key.")
    return key


def remove_key(*, db: Session, user: User, key_id: uuid.UUID) -> None:
    """Remove one of the user's keys (404 as :func:`get_key`). Instances made with it keep
    it: it was copied into their configuration."""
    db.delete(get_key(db=db, user=user, key_id=key_id))
    db.flush()


def key_texts(*, db: Session, user: User, key_ids: Sequence[uuid.UUID]) -> list[str]:
    """The public keys of the user's saved keys ``key_ids``, in that order; an id that is not
    one of the user's keys is a 422 naming it (the order is refused, nothing is made)."""
    if not key_ids:
        return []
    wanted = list(dict.fromkeys(key_ids))
    rows = db.execute(
        select(SshKey.id, SshKey.public_key).where(SshKey.user_id == user.id, SshKey.id.in_(wanted))
    ).all()
    found = {row.id: row.public_key for row in rows}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise InvalidInputError(
            "Some of the chosen SSH keys are not among your saved keys.",
            errors=[{"field": "ssh_key_ids", "message": f"{len(missing)} not among your keys"}],
        )
    return [found[i] for i in wanted]
