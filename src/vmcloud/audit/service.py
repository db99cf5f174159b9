"""The audit trail: one mechanism for every domain.

- **Automatic capture.** Models that declare ``__audit__ = "<entity>"`` are watched: each flush
  that inserts, changes or deletes one writes an ``audit_logs`` row in the same transaction —
  action ``<entity>.create|update|delete``, the entity id, and old/new values of exactly the
  columns that changed (secrets redacted). No route or service writes this code itself.
- **Naming the action.** A service that knows better what happened labels the object before the
  flush: ``audit.label(user, "user.suspend")`` turns that object's row into ``user.suspend``.
- **Events without a changed row** (a failed login, a logout) are written with :func:`record`.
- **Who and from where** comes from the unit of work: the request's session carries an
  :class:`AuditContext` (client address, user agent, and the authenticated user once known); a
  job's session carries an empty one (the system).
- **Live**: a transaction that writes audit rows announces one staff-only ``audit`` event as it
  commits (``core.events``), whatever the number of rows, so the open audit pages re-read.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, event, inspect, or_, select
from sqlalchemy.orm import Session, UOWTransaction
from sqlalchemy.orm.base import NO_VALUE

from vmcloud.audit.models import AuditLog
from vmcloud.core import events
from vmcloud.core.clock import isoformat_z
from vmcloud.core.net import RequestMeta
from vmcloud.core.pagination import PageParams, paginate

REDACTED = "[redacted]"
# Any key containing one of these is a secret, whatever the entity.
_SECRET_MARKERS = ("password", "secret", "token", "hash", "code", "key")
_MAX_USER_AGENT = 1000
_ALWAYS_IGNORED = frozenset({"created_at", "updated_at"})
_CONTEXT_KEY = "audit_context"
_LABEL_KEY = "audit_label"
_WRITTEN_KEY = "audit_written"  # this transaction wrote audit rows: announce them at commit


@dataclass
class AuditContext:
    actor_id: uuid.UUID | None = None
    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class _Label:
    action: str
    by_self: bool
    extra: Mapping[str, Any] | None


def bind(db: Session, context: AuditContext) -> None:
    db.info[_CONTEXT_KEY] = context


def context_of(db: Session) -> AuditContext:
    context = db.info.get(_CONTEXT_KEY)
    if context is None:
        context = AuditContext()
        db.info[_CONTEXT_KEY] = context
    assert isinstance(context, AuditContext)
    return context


def label(
    obj: object,
    action: str,
    *,
    by_self: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Name the action recorded for ``obj`` in this unit of work. ``by_self`` says the entity
    acted on itself (a user signing up, verifying, logging in) when nobody is logged in."""
    inspect(obj).info[_LABEL_KEY] = _Label(action, by_self, extra)


def trail_of(
    db: Session, *, entity_type: str, entity_id: uuid.UUID, limit: int = 20
) -> list[AuditLog]:
    """The newest ``limit`` audit rows of one entity, newest first (an instance's activity)."""
    stmt = (
        select(AuditLog)
        .where(AuditLog.entity_type == entity_type, AuditLog.entity_id == entity_id)
        .order_by(AuditLog.timestamp.desc(), AuditLog.id.desc())
        .limit(limit)
    )
    return list(db.scalars(stmt))


@dataclass(frozen=True)
class LogFilter:
    """Which audit rows a staff list shows; every field is optional (None: any)."""

    user_id: uuid.UUID | None = None
    entity_type: str | None = None
    entity_id: uuid.UUID | None = None
    action: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.user_id:
            found.append(AuditLog.user_id == self.user_id)
        if self.entity_type:
            found.append(AuditLog.entity_type == self.entity_type)
        if self.entity_id:
            found.append(AuditLog.entity_id == self.entity_id)
        if self.action:
            found.append(AuditLog.action == self.action)
        if self.since:
            found.append(AuditLog.timestamp >= self.since)
        if self.until:
            found.append(AuditLog.timestamp < self.until)
        return found


def list_logs(
    *, db: Session, params: PageParams, where: LogFilter
) -> tuple[list[AuditLog], str | None]:
    """The audit trail, newest first, one keyset page (each filter has its index)."""
    stmt = select(AuditLog).where(*where.conditions())
    return paginate(db, stmt, order_by=(AuditLog.timestamp, AuditLog.id), params=params)


def newest_key(*, db: Session, where: LogFilter) -> tuple[datetime | None, uuid.UUID] | None:
    """The list order's key of the newest row matching ``where`` (a live page re-reads only
    when it changed)."""
    row = db.execute(
        select(AuditLog.timestamp, AuditLog.id)
        .where(*where.conditions())
        .order_by(AuditLog.timestamp.desc(), AuditLog.id.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def trail_of_user(db: Session, *, user_id: uuid.UUID, limit: int = 20) -> list[AuditLog]:
    """The newest ``limit`` audit rows a user made or that concern their account, newest
    first (the staff page of one user)."""
    about = and_(AuditLog.entity_type == "user", AuditLog.entity_id == user_id)
    stmt = (
        select(AuditLog)
        .where(or_(AuditLog.user_id == user_id, about))
        .order_by(AuditLog.timestamp.desc(), AuditLog.id.desc())
        .limit(limit)
    )
    return list(db.scalars(stmt))


def redact(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if any(marker in key.lower() for marker in _SECRET_MARKERS):
            clean[key] = REDACTED
        elif isinstance(value, Mapping):
            clean[key] = redact(value)
        else:
            clean[key] = _jsonable(value)
    return clean


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat_z(value)
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def record(
    *,
    db: Session,
    action: str,
    actor_id: uuid.UUID | None = None,
    meta: RequestMeta | None = None,
    entity_type: str | None = None,
    entity_id: uuid.UUID | None = None,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> AuditLog:
    """Write one audit row for an event that changes no audited row."""
    context = context_of(db)
    row = AuditLog(
        user_id=actor_id if actor_id is not None else context.actor_id,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        old_values=redact(old),
        new_values=redact(new),
        ip_address=meta.ip if meta else context.ip,
        user_agent=_clip(meta.user_agent if meta else context.user_agent),
        metadata_json=redact(extra),
    )
    db.add(row)
    db.info[_WRITTEN_KEY] = True
    return row


def _clip(user_agent: str | None) -> str | None:
    return user_agent[:_MAX_USER_AGENT] if user_agent else None


# -- automatic capture ---------------------------------------------------------------------


def _entity(obj: object) -> str | None:
    return getattr(type(obj), "__audit__", None)


def _ignored(obj: object) -> frozenset[str]:
    return _ALWAYS_IGNORED | frozenset(getattr(type(obj), "__audit_ignore__", ()))


def _changes(obj: object, kind: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    state = inspect(obj)
    ignored = _ignored(obj)
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        name = attr.key
        if name in ignored:
            continue
        history = state.attrs[name].history
        if kind == "create":
            value = history.added[0] if history.added else None
            if value is not None:
                new[name] = value
        elif kind == "delete":
            loaded = state.attrs[name].loaded_value
            old[name] = None if loaded is NO_VALUE else loaded
        elif history.has_changes():
            old[name] = history.deleted[0] if history.deleted else None
            new[name] = history.added[0] if history.added else None
    return (old or None), (new or None)


def _entity_id(obj: object) -> tuple[uuid.UUID | None, dict[str, Any]]:
    identity = inspect(obj).mapper.primary_key_from_instance(obj)
    if len(identity) == 1 and isinstance(identity[0], uuid.UUID):
        return identity[0], {}
    # Keys that are not UUIDs (a setting's name) go into the row's metadata.
    names = [col.key for col in inspect(obj).mapper.primary_key]
    return None, {name: _jsonable(value) for name, value in zip(names, identity, strict=True)}


@dataclass
class _Pending:
    """What one unit of work did to one audited object, merged over all its flushes."""

    kind: str
    obj: object
    old: dict[str, Any]
    new: dict[str, Any]


_PENDING_KEY = "audit_pending"


def _pending(session: Session) -> dict[object, _Pending]:
    found: dict[object, _Pending] = session.info.setdefault(_PENDING_KEY, {})
    return found


@event.listens_for(Session, "before_flush")
def _capture(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    """Remember every change to an audited object; rows are written once, at commit, so a
    request that flushes an object several times still gets one row for it, whose action can be
    labelled at any point before the commit."""
    pending = _pending(session)
    changed: list[tuple[str, object]] = [
        *(("create", obj) for obj in session.new),
        *(("update", obj) for obj in session.dirty),
        *(("delete", obj) for obj in session.deleted),
    ]
    for kind, obj in changed:
        if _entity(obj) is None:
            continue
        old, new = _changes(obj, kind)
        if kind == "create" and getattr(obj, "id", False) is None:
            obj.id = uuid.uuid4()  # type: ignore[attr-defined]
        state = inspect(obj)
        seen = pending.get(state)
        if seen is None:
            pending[state] = _Pending(kind, obj, dict(old or {}), dict(new or {}))
            continue
        for name, value in (old or {}).items():
            seen.old.setdefault(name, value)  # the value before the unit of work began
        seen.new.update(new or {})
        if kind == "delete":
            seen.kind = "delete" if seen.kind != "create" else "discarded"


@event.listens_for(Session, "before_commit")
def _write(session: Session) -> None:
    session.flush()  # capture whatever is still unflushed
    _write_pending(session, session.info.pop(_PENDING_KEY, None) or {})
    if session.info.pop(_WRITTEN_KEY, False):
        # Once per transaction, however many rows: staff-only (no user).
        events.announce(session, kind="audit", user_id=None)


def _write_pending(session: Session, pending: dict[Any, _Pending]) -> None:
    context = context_of(session)
    for state, change in pending.items():
        tag: _Label | None = state.info.pop(_LABEL_KEY, None)
        old = {
            k: v
            for k, v in change.old.items()
            if change.new.get(k, v) != v or change.kind != "update"
        }
        new = {k: v for k, v in change.new.items() if k in old or change.kind == "create"}
        if change.kind == "delete":
            new = {}
        if change.kind == "discarded" or (change.kind == "update" and not new and tag is None):
            continue
        entity_id, keys = _entity_id(change.obj)
        actor = entity_id if tag and tag.by_self else context.actor_id
        # Identity keys are names, never secrets, even when the column is called "key".
        extra = {**keys, **(redact(tag.extra) or {})} if tag else keys
        session.add(
            AuditLog(
                user_id=actor,
                action=tag.action if tag else f"{_entity(change.obj)}.{change.kind}",
                entity_type=_entity(change.obj),
                entity_id=entity_id,
                old_values=redact(old) or None,
                new_values=redact(new) or None,
                ip_address=context.ip,
                user_agent=_clip(context.user_agent),
                metadata_json=extra or None,
            )
        )
        session.info[_WRITTEN_KEY] = True


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous_transaction: object) -> None:
    if not getattr(previous_transaction, "nested", False):
        session.info.pop(_PENDING_KEY, None)
        session.info.pop(_WRITTEN_KEY, None)


def recent(db: Session, *, limit: int = 10) -> list[AuditLog]:
    """The newest ``limit`` audit rows of any entity, newest first (the staff overview)."""
    stmt = select(AuditLog).order_by(AuditLog.timestamp.desc(), AuditLog.id.desc()).limit(limit)
    return list(db.scalars(stmt))
