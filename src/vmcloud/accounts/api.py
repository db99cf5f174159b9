"""Routes: /auth/* and /me/*."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse

from vmcloud.accounts import admin as admin_service
from vmcloud.accounts import api_tokens, logins, service, sessions, ssh_keys, two_factor
from vmcloud.accounts.deps import (
    AdminUser,
    CurrentUser,
    Limiter,
    LoginUser,
    StaffUser,
    TokenClaims,
    login_address_not_refused,
)
from vmcloud.accounts.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    EmailRequest,
    EmailVerified,
    LoginRequest,
    MeUpdate,
    PasswordChange,
    PasswordResetConfirm,
    RecoveryCodes,
    RefreshRequest,
    RegisterRequest,
    SessionRead,
    SessionsRevoked,
    SshKeyCreate,
    SshKeyRead,
    TokenPair,
    TwoFactorCode,
    TwoFactorDisable,
    TwoFactorSetup,
    UserAdminRead,
    UserAdminUpdate,
    UserRead,
    VerifyEmailRequest,
)
from vmcloud.core import idempotency
from vmcloud.core.deps import app_settings
from vmcloud.core.net import ClientMeta
from vmcloud.core.pagination import Page, PageQuery, page_of
from vmcloud.db.session import DbSession, ReadDbSession

auth = APIRouter(prefix="/auth", tags=["auth"])
me = APIRouter(prefix="/me", tags=["account"])
admin = APIRouter(prefix="/admin/users", tags=["admin: users"])

ACCEPTED = {"status": "accepted"}


@auth.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserRead)
def register(body: RegisterRequest, db: DbSession, limiter: Limiter, meta: ClientMeta) -> object:
    return service.register(db=db, limiter=limiter, body=body, meta=meta)


@auth.post("/verify-email", response_model=EmailVerified)
def verify_email(
    body: VerifyEmailRequest, db: DbSession, limiter: Limiter, meta: ClientMeta
) -> EmailVerified:
    service.verify_email(db=db, limiter=limiter, token=body.token, meta=meta)
    return EmailVerified(email_verified=True)


@auth.post("/resend-verification", status_code=status.HTTP_202_ACCEPTED)
def resend_verification(
    body: EmailRequest, db: DbSession, limiter: Limiter, meta: ClientMeta
) -> dict[str, str]:
    service.resend_verification(db=db, limiter=limiter, email=body.email, meta=meta)
    return ACCEPTED


@auth.post("/login", response_model=TokenPair, dependencies=[Depends(login_address_not_refused)])
def login(
    body: LoginRequest, request: Request, db: DbSession, limiter: Limiter, meta: ClientMeta
) -> TokenPair:
    return sessions.login(
        db=db,
        limiter=limiter,
        settings=app_settings(request),
        login=body.login,
        password=body.password,
        totp_code=body.totp_code,
        meta=meta,
    )


@auth.post("/refresh", response_model=TokenPair)
def refresh(
    body: RefreshRequest, request: Request, db: DbSession, limiter: Limiter, meta: ClientMeta
) -> TokenPair:
    return sessions.refresh(
        db=db, limiter=limiter, settings=app_settings(request), raw=body.refresh_token, meta=meta
    )


@auth.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(body: RefreshRequest, user: LoginUser, db: DbSession, meta: ClientMeta) -> None:
    sessions.logout(db=db, user=user, raw=body.refresh_token, meta=meta)


@auth.post("/password-reset/request", status_code=status.HTTP_202_ACCEPTED)
def password_reset_request(
    body: EmailRequest, db: DbSession, limiter: Limiter, meta: ClientMeta
) -> dict[str, str]:
    service.request_password_reset(db=db, limiter=limiter, email=body.email, meta=meta)
    return ACCEPTED


@auth.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
def password_reset_confirm(
    body: PasswordResetConfirm, db: DbSession, limiter: Limiter, meta: ClientMeta
) -> None:
    service.confirm_password_reset(
        db=db, limiter=limiter, token=body.token, new_password=body.new_password, meta=meta
    )


@me.get("", response_model=UserRead)
def read_me(user: CurrentUser) -> object:
    return user


@me.patch("", response_model=UserRead)
def update_me(body: MeUpdate, user: CurrentUser, db: DbSession) -> object:
    return service.update_profile(db=db, user=user, body=body)


@me.post("/password", status_code=status.HTTP_204_NO_CONTENT)
def change_password(
    body: PasswordChange,
    user: CurrentUser,
    claims: TokenClaims,
    db: DbSession,
    limiter: Limiter,
) -> None:
    service.change_password(
        db=db,
        limiter=limiter,
        user=user,
        current_password=body.current_password,
        new_password=body.new_password,
        keep_session=claims.session_id,
    )


@me.post("/2fa/setup", response_model=TwoFactorSetup)
def two_factor_setup(user: LoginUser, request: Request, db: DbSession) -> TwoFactorSetup:
    return two_factor.setup(db=db, settings=app_settings(request), user=user)


@me.post("/2fa/enable", response_model=RecoveryCodes)
def two_factor_enable(
    body: TwoFactorCode,
    user: LoginUser,
    request: Request,
    db: DbSession,
    limiter: Limiter,
) -> RecoveryCodes:
    return two_factor.enable(
        db=db, limiter=limiter, settings=app_settings(request), user=user, code=body.code
    )


@me.post("/2fa/disable", status_code=status.HTTP_204_NO_CONTENT)
def two_factor_disable(
    body: TwoFactorDisable,
    user: LoginUser,
    request: Request,
    db: DbSession,
    limiter: Limiter,
) -> None:
    two_factor.disable(
        db=db,
        limiter=limiter,
        settings=app_settings(request),
        user=user,
        password=body.password,
        code=body.code,
    )


@me.get("/sessions", response_model=list[SessionRead], summary="List my live logins")
def list_sessions(user: CurrentUser, claims: TokenClaims, db: DbSession) -> list[SessionRead]:
    return logins.list_logins(db=db, user=user, current=claims.session_id)


@me.delete(
    "/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, summary="End one login"
)
def end_session(session_id: uuid.UUID, user: LoginUser, db: DbSession, meta: ClientMeta) -> None:
    logins.end_login(db=db, user=user, session_id=session_id, meta=meta)


@me.post(
    "/sessions/revoke-others",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End every login but this one",
)
def end_other_sessions(
    user: CurrentUser, claims: TokenClaims, db: DbSession, meta: ClientMeta
) -> None:
    logins.end_other_logins(db=db, user=user, keep_session=claims.session_id, meta=meta)


@me.get("/ssh-keys", response_model=list[SshKeyRead], summary="My saved SSH keys")
def list_ssh_keys(user: CurrentUser, db: DbSession) -> list[SshKeyRead]:
    return [SshKeyRead.model_validate(k) for k in ssh_keys.list_keys(db=db, user=user)]


@me.post(
    "/ssh-keys",
    response_model=SshKeyRead,
    status_code=status.HTTP_201_CREATED,
    summary="Save an SSH public key (needs a login, not a token)",
)
def add_ssh_key(body: SshKeyCreate, user: LoginUser, db: DbSession) -> SshKeyRead:
    key = ssh_keys.add_key(db=db, user=user, name=body.name, public_key=body.public_key)
    return SshKeyRead.model_validate(key)


@me.delete(
    "/ssh-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a saved key (needs a login)",
)
def remove_ssh_key(key_id: uuid.UUID, user: LoginUser, db: DbSession) -> None:
    ssh_keys.remove_key(db=db, user=user, key_id=key_id)


@me.get("/tokens", response_model=list[ApiTokenRead], summary="My personal API tokens")
def list_api_tokens(user: CurrentUser, db: DbSession) -> list[ApiTokenRead]:
    return [ApiTokenRead.model_validate(t) for t in api_tokens.list_tokens(db=db, user=user)]


@me.post(
    "/tokens",
    response_model=ApiTokenCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Make a personal API token (shown once; needs a login, not a token)",
)
def create_api_token(
    body: ApiTokenCreate, user: LoginUser, db: DbSession, key: idempotency.KeyHeader
) -> ApiTokenCreated | JSONResponse:
    made: dict[str, str] = {}

    def produce() -> ApiTokenRead:
        token, made["secret"] = api_tokens.create_token(
            db=db, user=user, name=body.name, scopes=body.scopes, expires_at=body.expires_at
        )
        return ApiTokenRead.model_validate(token)

    # The key's record keeps the token without its secret: a replay answers the token made,
    # never the secret again (it was shown once).
    created = idempotency.once(
        db=db,
        user_id=user.id,
        key=key,
        endpoint="POST /me/tokens",
        body=body,
        status=status.HTTP_201_CREATED,
        produce=produce,
    )
    if not isinstance(created, ApiTokenRead):
        return created
    return ApiTokenCreated(**created.model_dump(), token=made["secret"])


@me.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke a token")
def revoke_api_token(token_id: uuid.UUID, user: CurrentUser, db: DbSession) -> None:
    api_tokens.revoke_token(db=db, user=user, token_id=token_id)


@admin.get("", response_model=Page[UserAdminRead], summary="Find users")
def admin_list_users(
    db: ReadDbSession,
    _: StaffUser,
    page: PageQuery,
    q: Annotated[str | None, Query(max_length=255, description="part of email or username")] = None,
    role: Literal["customer", "support", "admin"] | None = None,
    status: Literal["active", "suspended", "banned", "closed"] | None = None,
) -> Page[UserAdminRead]:
    items, cursor = admin_service.list_users(db=db, params=page, q=q, role=role, status=status)
    return page_of(UserAdminRead, items, cursor)


@admin.get("/{user_id}", response_model=UserAdminRead)
def admin_get_user(user_id: uuid.UUID, db: DbSession, _: StaffUser) -> object:
    return admin_service.get_user(db=db, user_id=user_id)


@admin.patch("/{user_id}", response_model=UserAdminRead)
def admin_update_user(
    user_id: uuid.UUID, body: UserAdminUpdate, db: DbSession, _: AdminUser
) -> object:
    return admin_service.update_user(db=db, user_id=user_id, body=body)


@admin.post(
    "/{user_id}/sessions/revoke",
    response_model=SessionsRevoked,
    summary="Log a user out everywhere: every login and personal API token ends",
)
def admin_revoke_sessions(user_id: uuid.UUID, db: DbSession, _: AdminUser) -> SessionsRevoked:
    logins, tokens = admin_service.revoke_sessions(db=db, user_id=user_id)
    return SessionsRevoked(sessions_revoked=logins, api_tokens_revoked=tokens)
