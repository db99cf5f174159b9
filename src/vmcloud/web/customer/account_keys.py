"""The account's SSH keys (``/account/ssh-keys``) and personal API tokens
(``/account/tokens``), with the services the ``/me/ssh-keys`` and ``/me/tokens`` API calls.

Saving a key and making a token run once per form nonce (``core.idempotency``, as the API's
Idempotency-Key). A token's secret is in the answer to the post that made it and nowhere
else: the idempotency record keeps the token without it, so a replayed post says the token
was made and cannot show the secret again."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import api_tokens, ssh_keys
from vmcloud.accounts.models import User
from vmcloud.accounts.schemas import ApiTokenCreate, ApiTokenRead, SshKeyCreate, SshKeyRead
from vmcloud.core import idempotency
from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ProblemError
from vmcloud.db.session import DbSession
from vmcloud.web.forms import FormError, check_nonce, parse, settle
from vmcloud.web.render import redirect, render
from vmcloud.web.session import PanelUser

router = APIRouter(prefix="/account", include_in_schema=False)

KEYS = "/account/ssh-keys"
TOKENS = "/account/tokens"
Text = Annotated[str, Form(max_length=300)]
Level = Annotated[str, Form(max_length=10)]
EXPIRY_DAYS = {"30": 30, "90": 90, "365": 365}


# -- SSH keys ------------------------------------------------------------------------------


def _keys_page(
    request: Request,
    db: Session,
    user: User,
    *,
    form: dict[str, str] | None = None,
    problem: FormError | None = None,
    remove_problem: tuple[str, FormError] | None = None,
) -> Response:
    failed = problem or (remove_problem[1] if remove_problem else None)
    context = {
        "section": "account",
        "keys": ssh_keys.list_keys(db=db, user=user),
        "limit": ssh_keys.MAX_KEYS_PER_USER,
        "form": form or {"name": "", "public_key": ""},
        "problem": problem,
        "remove_problem": remove_problem,
    }
    return render(
        request,
        "account/ssh_keys.html",
        context,
        status=failed.status if failed else 200,
        headers=failed.headers if failed else None,
    )


@router.get("/ssh-keys")
def keys_page(request: Request, db: DbSession, user: PanelUser) -> Response:
    return _keys_page(request, db, user)


@router.post("/ssh-keys")
def add_key(
    request: Request,
    db: DbSession,
    user: PanelUser,
    name: Text = "",
    public_key: Annotated[str, Form(max_length=16_384)] = "",
    nonce: Text = "",
) -> Response:
    form = {"name": name, "public_key": public_key}
    try:
        check_nonce(nonce)
        body = parse(SshKeyCreate, form)
        idempotency.once(
            db=db,
            user_id=user.id,
            key=f"panel:{nonce}",
            endpoint="POST /me/ssh-keys",
            body=body,
            status=201,
            produce=lambda: SshKeyRead.model_validate(
                ssh_keys.add_key(db=db, user=user, name=body.name, public_key=body.public_key)
            ),
        )
    except FormError as problem:
        return _keys_page(request, db, user, form=form, problem=problem)
    except ProblemError as exc:
        return _keys_page(request, db, user, form=form, problem=settle(db, exc))
    return redirect(request, KEYS, flash=f"The key {body.name!r} is saved.")


@router.post("/ssh-keys/{key_id}/delete")
def remove_key(
    request: Request, db: DbSession, user: PanelUser, key_id: uuid.UUID, confirm_name: Text = ""
) -> Response:
    key = ssh_keys.get_key(db=db, user=user, key_id=key_id)  # anyone else's: 404
    name = key.name
    if confirm_name != name:
        problem = FormError(
            fields={"confirm_name": "type the key's name"},
            message=f"Type {name!r} to remove this key.",
        )
        return _keys_page(request, db, user, remove_problem=(str(key_id), problem))
    ssh_keys.remove_key(db=db, user=user, key_id=key_id)
    return redirect(request, KEYS, flash=f"The key {name!r} is removed.")


# -- API tokens ----------------------------------------------------------------------------


class _TokenForm(BaseModel):
    name: str
    scopes: list[str]
    expires: str
    expires_on: str
    instances: str
    billing: str
    support: str
    account: str
    admin: str


def _tokens_page(
    request: Request,
    db: Session,
    user: User,
    *,
    form: dict[str, str] | None = None,
    problem: FormError | None = None,
    revoke_problem: tuple[str, FormError] | None = None,
) -> Response:
    failed = problem or (revoke_problem[1] if revoke_problem else None)
    context = {
        "section": "account",
        "tokens": api_tokens.list_tokens(db=db, user=user),
        "areas": api_tokens.scope_choices(user),
        "now": utcnow(),
        "form": form or {"name": "", "expires": "90", "expires_on": ""},
        "problem": problem,
        "revoke_problem": revoke_problem,
    }
    return render(
        request,
        "account/tokens.html",
        context,
        status=failed.status if failed else 200,
        headers=failed.headers if failed else None,
    )


@router.get("/tokens")
def tokens_page(request: Request, db: DbSession, user: PanelUser) -> Response:
    return _tokens_page(request, db, user)


def _expiry(expires: str, expires_on: str) -> datetime | None:
    """When a token chosen to last ``expires`` ends: never, a number of days from now, or
    the end of the day ``expires_on`` (UTC)."""
    if expires == "never":
        return None
    if expires in EXPIRY_DAYS:
        return utcnow() + timedelta(days=EXPIRY_DAYS[expires])
    if expires == "date":
        try:
            day = date.fromisoformat(expires_on)
        except ValueError:
            raise FormError(
                fields={"expires_on": "a date such as 2027-01-31"}, message="Choose the date."
            ) from None
        if day > date(9998, 12, 31):
            raise FormError(fields={"expires_on": "too far"}, message="Choose a nearer date.")
        return datetime.combine(day + timedelta(days=1), time())
    raise FormError(fields={"expires": "choose an expiry"}, message="Choose when it expires.")


def _scopes(levels: dict[str, str]) -> list[str]:
    chosen = []
    for area, level in levels.items():
        if level in ("read", "write"):
            chosen.append(f"{area}:{level}")
        elif level not in ("", "none"):
            raise FormError(fields={"scopes": "none, read or full"}, message="Check the scopes.")
    if not chosen:
        raise FormError(
            fields={"scopes": "give at least one area read or full access"},
            message="Choose what the token may do.",
        )
    return chosen


@router.post("/tokens")
def create_token(
    request: Request,
    db: DbSession,
    user: PanelUser,
    name: Text = "",
    scope_instances: Level = "",
    scope_billing: Level = "",
    scope_support: Level = "",
    scope_account: Level = "",
    scope_admin: Level = "",
    expires: Level = "",
    expires_on: Text = "",
    nonce: Text = "",
) -> Response:
    levels = {
        "instances": scope_instances,
        "billing": scope_billing,
        "support": scope_support,
        "account": scope_account,
        "admin": scope_admin,
    }
    form: dict[str, Any] = {"name": name, "expires": expires, "expires_on": expires_on, **levels}
    made: dict[str, str] = {}

    def produce() -> ApiTokenRead:
        token, secret = api_tokens.create_token(
            db=db, user=user, name=body.name, scopes=body.scopes, expires_at=body.expires_at
        )
        made["secret"] = secret
        return ApiTokenRead.model_validate(token)

    try:
        check_nonce(nonce)
        values = {
            "name": name,
            "scopes": _scopes(levels),
            "expires_at": _expiry(expires, expires_on),
        }
        body = parse(ApiTokenCreate, values)
        created = idempotency.once(
            db=db,
            user_id=user.id,
            key=f"panel:{nonce}",
            endpoint="POST /account/tokens",
            # What was typed, not the expiry worked out from it: a resubmit a second later
            # is the same request.
            body=_TokenForm(scopes=body.scopes, **form),
            status=201,
            produce=produce,
        )
    except FormError as problem:
        return _tokens_page(request, db, user, form=form, problem=problem)
    except ProblemError as exc:
        return _tokens_page(request, db, user, form=form, problem=settle(db, exc))
    if not isinstance(created, ApiTokenRead):  # the same form posted again
        return redirect(
            request,
            TOKENS,
            flash="This token was already made; its secret was shown once and cannot be again.",
            level="warning",
        )
    return render(
        request,
        "account/token_created.html",
        {"section": "account", "token": created, "secret": made["secret"]},
    )


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    request: Request,
    db: DbSession,
    user: PanelUser,
    token_id: uuid.UUID,
    confirm_name: Text = "",
) -> Response:
    token = api_tokens.get_token(db=db, user=user, token_id=token_id)  # anyone else's: 404
    name = token.name
    if confirm_name != name:
        problem = FormError(
            fields={"confirm_name": "type the token's name"},
            message=f"Type {name!r} to revoke this token.",
        )
        return _tokens_page(request, db, user, revoke_problem=(str(token_id), problem))
    api_tokens.revoke_token(db=db, user=user, token_id=token_id)
    return redirect(request, TOKENS, flash=f"The token {name!r} is revoked; it no longer works.")
