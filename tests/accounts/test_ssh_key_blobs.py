"""Malformed public keys are refused with the 422 invalid-key problem, never a 500: truncated
data, a blob whose inner fields are of the wrong kind, a compressed elliptic-curve point, length
fields far past the data, RSA keys too large, comments too long."""

from __future__ import annotations

import base64
import contextlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.helpers import bearer, login
from vmcloud.accounts import ssh_keys

KEYS = "/api/v1/me/ssh-keys"


def _s(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _line(kind: str, blob: bytes, comment: str = "") -> str:
    return f"{kind} {base64.b64encode(blob).decode()} {comment}".strip()


def _point(curve: ec.EllipticCurve, encoding: PublicFormat) -> bytes:
    key = ec.generate_private_key(curve).public_key()
    return key.public_bytes(Encoding.X962, encoding)


def _rsa(bits: int) -> str:
    modulus = (1 << (bits - 1)) | 1  # odd, of exactly ``bits`` bits
    n = modulus.to_bytes(bits // 8 + 1, "big")
    return _line("ssh-rsa", _s(b"ssh-rsa") + _s(b"\x01\x00\x01") + _s(n))


P256 = b"ecdsa-sha2-nistp256"
MALFORMED = {
    "compressed point": _line(
        "ecdsa-sha2-nistp256",
        _s(P256) + _s(b"nistp256") + _s(_point(ec.SECP256R1(), PublicFormat.CompressedPoint)),
    ),
    "compressed point, made up": _line(
        "ecdsa-sha2-nistp256", _s(P256) + _s(b"nistp256") + _s(b"\x02" + b"\x01" * 32)
    ),
    "wrong curve inside": _line(
        "ecdsa-sha2-nistp256",
        _s(P256) + _s(b"nistp384") + _s(_point(ec.SECP384R1(), PublicFormat.UncompressedPoint)),
    ),
    "point off the curve": _line(
        "ecdsa-sha2-nistp256", _s(P256) + _s(b"nistp256") + _s(b"\x04" + b"\x01" * 64)
    ),
    "empty point": _line("ecdsa-sha2-nistp256", _s(P256) + _s(b"nistp256") + _s(b"")),
    "truncated": _line("ssh-ed25519", _s(b"ssh-ed25519") + _s(b"\x01" * 32)[:20]),
    "huge length field": _line(
        "ssh-ed25519", _s(b"ssh-ed25519") + struct.pack(">I", 0xFFFFFFFF) + b"\x01" * 32
    ),
    "ed25519 key of 31 bytes": _line("ssh-ed25519", _s(b"ssh-ed25519") + _s(b"\x01" * 31)),
    "rsa with nothing inside": _line("ssh-rsa", _s(b"ssh-rsa")),
    "rsa with an empty modulus": _line("ssh-rsa", _s(b"ssh-rsa") + _s(b"\x01\x00\x01") + _s(b"")),
    "rsa above 16384 bits": _rsa(16392),
    "trailing fields": _line("ssh-ed25519", _s(b"ssh-ed25519") + _s(b"\x01" * 32) + _s(b"x")),
    "comment too long": _line(
        "ssh-ed25519", _s(b"ssh-ed25519") + _s(b"\x01" * 32), "c" * (ssh_keys.MAX_COMMENT + 1)
    ),
}


@pytest.fixture
def owner(client: TestClient, db: Session) -> dict[str, str]:
    user = make_user(db)
    return bearer(login(client, user.username, PASSWORD))


@pytest.mark.parametrize("text", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_key_is_the_invalid_key_problem(
    client: TestClient, owner: dict[str, str], text: str
) -> None:
    refused = client.post(KEYS, json={"name": "k", "public_key": text}, headers=owner)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "public_key"
    assert client.get(KEYS, headers=owner).json() == []


def test_a_long_comment_within_the_bound_is_kept() -> None:
    point = _point(ec.SECP256R1(), PublicFormat.UncompressedPoint)
    text = _line(
        "ecdsa-sha2-nistp256",
        _s(P256) + _s(b"nistp256") + _s(point),
        "c" * ssh_keys.MAX_COMMENT,
    )
    assert ssh_keys.parse_public_key(text)[0] == text


_FIELD = st.one_of(
    st.binary(max_size=80).map(_s),
    st.sampled_from([b"ssh-rsa", b"nistp256", b"nistp384", b"\x04", b"\x02", b"ssh:"]).map(_s),
    st.binary(min_size=0, max_size=8),  # a torn field
    st.integers(0, 2**32 - 1).map(lambda n: struct.pack(">I", n)),  # a length, no data
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(ssh_keys.KEY_TYPES), fields=st.lists(_FIELD, max_size=5))
def test_any_blob_of_a_known_type_parses_or_is_refused(kind: str, fields: list[bytes]) -> None:
    text = _line(kind, _s(kind.encode()) + b"".join(fields))
    with contextlib.suppress(ssh_keys.InvalidKeyError):
        ssh_keys.parse_public_key(text)
