"""TOTP (RFC 6238) second factor: secrets encrypted at rest, codes good once, recovery codes."""

from __future__ import annotations

import hmac
import re
import secrets
import time

import pyotp
from cryptography.fernet import Fernet, InvalidToken

from vmcloud.accounts.tokens import hash_secret

PERIOD = 30
DIGITS = 6
# Accept the previous and next step too: phone clocks drift.
WINDOW = 1
RECOVERY_CODE_COUNT = 10
_CODE = re.compile(rf"[0-9]{{{DIGITS}}}")
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).provisioning_uri(
        name=account, issuer_name=issuer
    )


def encrypt(secret: str, key: str) -> str:
    return Fernet(key.encode()).encrypt(secret.encode()).decode()


def decrypt(token: str, key: str) -> str:
    try:
        return Fernet(key.encode()).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise RuntimeError("the stored TOTP secret cannot be decrypted with this key") from exc


def matching_step(
    secret: str, code: str, *, last_step: int | None, now: float | None = None
) -> int | None:
    """The time step ``code`` belongs to, if it is valid now and newer than ``last_step``.

    Remembering the last accepted step makes each code (and every older one) single use.
    """
    code = code.strip().replace(" ", "")
    if not _CODE.fullmatch(code):  # ASCII digits only: str.isdigit() also takes "١٢٣"
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    current = int((time.time() if now is None else now) // PERIOD)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes of 16 characters (about 79 bits each), grouped for reading: ``abcd-efgh-…``."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def normalise_recovery_code(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def hash_recovery_code(code: str) -> str:
    return hash_secret(normalise_recovery_code(code))
