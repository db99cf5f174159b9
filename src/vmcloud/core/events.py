"""State changes announced to open panel pages, through PostgreSQL's ``NOTIFY``.

A service that changes what a customer looks at (an instance's status or address, a balance,
a top-up, a new usage sample, a ticket's thread or status) calls :func:`announce` in the
transaction that makes the change. PostgreSQL holds the notification until that transaction
commits and drops it if it rolls back, so a page is never told about a change that did not
happen, and every web process listening on :data:`CHANNEL` hears every change, whichever
process made it.

A notification names what changed, not its new state (payloads are limited to 8000 bytes and
the listener re-reads the rows it renders anyway): ``{"kind": "instance", "id": …, "user": …}``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

CHANNEL = "vmcloud_events"
# Staff-only kinds (announced with no user): ``node`` (health or allocation changed),
# ``node_seen`` (a reconcile pass saw a node, nothing else changed), ``audit`` (a new audit
# row), ``job`` (a background job failed), ``backup`` (a backup or drill recorded).
KINDS = frozenset(
    {
        *("instance", "balance", "top_up", "subscription", "metric", "ticket"),
        *("node", "node_seen", "audit", "job", "backup"),
    }
)

_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def announce(db: Session, *, kind: str, user_id: uuid.UUID | None, id: object = None) -> None:
    """Tell the panel that ``kind`` ``id`` of ``user_id`` changed, once this transaction
    commits."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    payload = {"kind": kind, "user": str(user_id) if user_id else None}
    if id is not None:
        payload["id"] = str(id)
    db.execute(_NOTIFY, {"channel": CHANNEL, "payload": json.dumps(payload)})


def announce_users(db: Session, *, kind: str, user_ids: Sequence[uuid.UUID]) -> None:
    """:func:`announce` ``kind`` (no id) for each of ``user_ids``, in one statement (a
    set-based run that changes many customers at once)."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    if user_ids:
        db.execute(
            _NOTIFY_EACH,
            {"channel": CHANNEL, "kind": kind, "ids": [str(u) for u in user_ids]},
        )


_NOTIFY_EACH = text(
    "SELECT pg_notify(:channel, json_build_object('kind', CAST(:kind AS text), 'user', u)::text) "
    "FROM unnest(CAST(:ids AS text[])) AS u"
)


def parse(payload: str) -> dict[str, str | None] | None:
    """A notification's payload, or None when it is not one of ours."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        return None
    return {key: (str(value) if value is not None else None) for key, value in data.items()}
