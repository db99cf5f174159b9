"""Request and response bodies of the account endpoints."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from vmcloud.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from vmcloud.core.schemas import InputModel, Money, OutputModel, UTCDateTime, UTCInput

_PHONE = re.compile(r"^\+?[0-9][0-9 ()./-]{3,48}$")


def _check_phone(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _PHONE.match(value):
        raise ValueError("digits, spaces and + ( ) . / - only, 4 to 50 characters")
    return value


def _empty_to_none(value: str | None) -> str | None:
    return value or None


Password = Annotated[str, Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)]
# The current password is only compared, never judged: any length up to the cap is accepted.
AnyPassword = Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]
Name = Annotated[str | None, Field(max_length=100), AfterValidator(_empty_to_none)]
Phone = Annotated[str | None, Field(max_length=50), AfterValidator(_check_phone)]
Token = Annotated[str, Field(min_length=16, max_length=200)]
EmailInput = Annotated[str, Field(min_length=3, max_length=255)]


class RegisterRequest(InputModel):
    email: EmailInput
    username: Annotated[str, Field(min_length=3, max_length=100)]
    password: Password
    first_name: Name = None
    last_name: Name = None
    phone: Phone = None


class VerifyEmailRequest(InputModel):
    token: Token


class EmailRequest(InputModel):
    email: EmailInput


class LoginRequest(InputModel):
    login: Annotated[str, Field(min_length=1, max_length=255)]
    password: AnyPassword
    totp_code: Annotated[str | None, Field(max_length=40)] = None


class RefreshRequest(InputModel):
    refresh_token: Token


class PasswordResetConfirm(InputModel):
    token: Token
    new_password: Password


class PasswordChange(InputModel):
    current_password: AnyPassword
    new_password: Password


class MeUpdate(InputModel):
    first_name: Name = None
    last_name: Name = None
    phone: Phone = None


class TwoFactorCode(InputModel):
    code: Annotated[str, Field(min_length=6, max_length=40)]


class TwoFactorDisable(InputModel):
    password: AnyPassword
    code: Annotated[str, Field(min_length=6, max_length=40)]


class TokenPair(OutputModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, no secret
    expires_in: int


class UserRead(OutputModel):
    id: uuid.UUID
    email: str
    username: str
    role: str
    status: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    balance: Money | None
    email_verified: bool | None
    two_factor_enabled: bool | None
    last_login_at: UTCDateTime | None
    created_at: UTCDateTime | None


class EmailVerified(OutputModel):
    email_verified: bool


class TwoFactorSetup(OutputModel):
    secret: str
    otpauth_uri: str


class RecoveryCodes(OutputModel):
    recovery_codes: list[str]


class UserAdminUpdate(InputModel):
    role: Literal["customer", "support", "admin"] | None = None
    status: Literal["active", "suspended", "banned", "closed"] | None = None
    email_verified: bool | None = None


class UserAdminRead(UserRead):
    updated_at: UTCDateTime | None


class SessionsRevoked(OutputModel):
    """What logging a user out everywhere ended: refresh tokens of live logins, and personal
    API tokens."""

    sessions_revoked: int
    api_tokens_revoked: int


class SessionRead(OutputModel):
    """One live login (a refresh-token family): where it started and was last renewed."""

    id: uuid.UUID
    created_at: UTCDateTime | None
    last_used_at: UTCDateTime | None
    ip_address: str | None
    user_agent: str | None
    current: bool


KeyName = Annotated[str, Field(min_length=1, max_length=100)]


class SshKeyCreate(InputModel):
    name: KeyName
    public_key: Annotated[str, Field(min_length=1, max_length=16_384)]


class SshKeyRead(OutputModel):
    id: uuid.UUID
    name: str
    public_key: str
    fingerprint: str
    created_at: UTCDateTime | None


Scope = Annotated[str, Field(pattern=r"^[a-z]{1,20}:(read|write)$")]


class ApiTokenCreate(InputModel):
    """``scopes``: ``<area>:read`` or ``<area>:write`` for areas ``instances``, ``billing``,
    ``support``, ``account`` (and ``admin`` for staff); ``expires_at`` absent: never."""

    name: KeyName
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=10)]
    expires_at: UTCInput | None = None


class ApiTokenRead(OutputModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    expires_at: UTCDateTime | None
    last_used_at: UTCDateTime | None
    created_at: UTCDateTime | None


class ApiTokenCreated(ApiTokenRead):
    """The new token; ``token`` is the secret, shown this once and never again."""

    token: str
