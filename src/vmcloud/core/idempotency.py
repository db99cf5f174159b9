"""``Idempotency-Key``: a POST that moves money or creates an instance happens once per key.

The key's row is inserted at the start of the request, in the request's own transaction, and
the response is stored in it before that transaction commits. So:

- a retry after the first request committed finds the row and gets the first response back,
  with no second effect;
- a retry *while* the first is still running waits on the key's unique index until the first
  commits (then replays it) or rolls back (then runs itself): concurrent duplicates have one
  effect, enforced by PostgreSQL rather than by timing;
- the same key with another body, or on another endpoint, is ``409``;
- a request that fails (4xx/5xx) rolls back and stores nothing, so it can be retried with the
  same key once the cause is fixed.

Keys belong to a user and are kept for :data:`RETENTION` (then purged by a periodic job).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, delete, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.types import Uuid

from vmcloud.core.clock import utcnow
from vmcloud.core.errors import ConflictError, InvalidInputError
from vmcloud.db.base import Base, created_at, uuid_pk

RETENTION = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        Index("uq_idempotency_keys_user_key", "user_id", "key", unique=True),
        Index("ix_idempotency_keys_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    # Which endpoint and body the key was first used with (SHA-256, hex).
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[Any | None] = mapped_column(JSONB)
    created_at: Mapped[datetime | None] = created_at()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime())


def _header(
    idempotency_key: Annotated[
        str | None,
        Header(
            description="Makes a retry of this POST return the first response, with no second "
            "effect (1-255 printable ASCII characters, kept 24 hours)."
        ),
    ] = None,
) -> str | None:
    if idempotency_key is None:
        return None
    if not 1 <= len(idempotency_key) <= MAX_KEY_LENGTH or not all(
        0x21 <= ord(c) <= 0x7E for c in idempotency_key
    ):
        raise InvalidInputError(
            "The Idempotency-Key header must be 1-255 printable ASCII characters.",
            errors=[{"field": "Idempotency-Key", "message": "1-255 printable ASCII characters"}],
        )
    return idempotency_key


KeyHeader = Annotated[str | None, Depends(_header)]


def request_hash(endpoint: str, body: BaseModel) -> str:
    canonical = json.dumps(
        {"endpoint": endpoint, "body": body.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Claim:
    """The outcome of :func:`claim`: either a stored response to replay, or the key's row,
    claimed by this request, to :func:`remember` the response in."""

    replay: JSONResponse | None
    row_id: uuid.UUID | None


def claim(
    *, db: Session, user_id: uuid.UUID, key: str | None, endpoint: str, body: BaseModel
) -> Claim:
    if key is None:
        return Claim(replay=None, row_id=None)
    digest = request_hash(endpoint, body)
    # Waits while another transaction holding the same key is in flight (unique index).
    row_id = db.execute(
        insert(IdempotencyKey)
        .values(id=uuid.uuid4(), user_id=user_id, key=key, request_hash=digest, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["user_id", "key"])
        .returning(IdempotencyKey.id)
    ).scalar_one_or_none()
    if row_id is not None:
        return Claim(replay=None, row_id=row_id)
    first = db.execute(
        select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
    ).scalar_one()
    if first.request_hash != digest:
        raise ConflictError(
            "This Idempotency-Key was used with another request; use a new key.",
            type="idempotency-key-reused",
            title="Idempotency key reused",
        )
    return Claim(
        replay=JSONResponse(
            status_code=first.response_status or 200,
            content=first.response_body,
            headers={"Idempotent-Replayed": "true"},
        ),
        row_id=None,
    )


def remember(*, db: Session, claim: Claim, status: int, body: BaseModel) -> None:
    """Store the response of a claimed key (in the request's transaction)."""
    if claim.row_id is None:
        return
    row = db.get(IdempotencyKey, claim.row_id)
    if row is None:  # pragma: no cover - the row was inserted in this very transaction
        return
    row.response_status = status
    row.response_body = body.model_dump(mode="json")
    row.completed_at = utcnow()
    db.flush()


OutT = TypeVar("OutT", bound=BaseModel)


def once(
    *,
    db: Session,
    user_id: uuid.UUID,
    key: str | None,
    endpoint: str,
    body: BaseModel,
    status: int,
    produce: Callable[[], OutT],
) -> OutT | JSONResponse:
    """Do ``produce`` once per ``Idempotency-Key``: the first request with the key runs it and
    stores its response; a replay answers that response; the key with another body is 409.
    Without a key, it simply runs."""
    claimed = claim(db=db, user_id=user_id, key=key, endpoint=endpoint, body=body)
    if claimed.replay is not None:
        return claimed.replay
    out = produce()
    remember(db=db, claim=claimed, status=status, body=out)
    return out


def purge_expired(*, db: Session, now: datetime | None = None) -> int:
    cutoff = (now or utcnow()) - RETENTION
    result = db.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
