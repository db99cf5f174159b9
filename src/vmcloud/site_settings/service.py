"""Typed site settings stored as text in ``settings``.

Code reads a setting through its declaration in ``registry``: ``get(db, GRACE_DAYS) -> int``.
Values are validated on every write against the setting's stored type and, for declared keys,
the declaration's rule; a value that does not fit is a 422 and nothing changes. Reads go through
a short-lived cache shared by the sessions of one process: a change made in one process is seen
by every other within ``CACHE_TTL`` seconds, and at once in the process that made it.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from vmcloud.core.errors import InvalidInputError, NotFoundError
from vmcloud.core.logging import get_logger
from vmcloud.site_settings.models import Setting as SettingRow
from vmcloud.site_settings.registry import ORDERED, REGISTRY, Setting

T = TypeVar("T")
log = get_logger(__name__)

CACHE_TTL = 2.0
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
CACHE_KEY = "settings_cache"


def parse_value(raw: str, type_: str) -> Any:
    """The typed value of a stored setting; ``ValueError`` when it does not fit its type."""
    if type_ == "string":
        return raw
    if type_ == "boolean":
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    if type_ == "number":
        try:
            number = Decimal(raw.strip())
        except InvalidOperation as exc:
            raise ValueError(f"not a number: {raw!r}") from exc
        if not number.is_finite():
            raise ValueError(f"not a finite number: {raw!r}")
        return int(number) if number == number.to_integral_value() and "." not in raw else number
    if type_ == "json":
        return json.loads(raw)
    raise ValueError(f"unknown setting type {type_!r}")


def to_json(value: Any) -> Any:
    """Typed value as the API shows it: decimals as strings (never floats), the rest as is."""
    return str(value) if isinstance(value, Decimal) else value


@dataclass(frozen=True)
class _Entry:
    value: Any
    is_public: bool


class SettingsCache:
    """All settings of one database, reloaded when older than ``CACHE_TTL``."""

    def __init__(self, ttl: float = CACHE_TTL) -> None:
        self.ttl = ttl
        self._entries: dict[str, _Entry] | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def entries(self, db: Session) -> dict[str, _Entry]:
        with self._lock:
            if self._entries is None or time.monotonic() - self._loaded_at > self.ttl:
                self._entries = _load(db)
                self._loaded_at = time.monotonic()
            return self._entries

    def invalidate(self) -> None:
        with self._lock:
            self._entries = None


def _load(db: Session) -> dict[str, _Entry]:
    entries = {}
    for row in db.scalars(select(SettingRow)):
        try:
            entries[row.key] = _Entry(parse_value(row.value, row.type), bool(row.is_public))
        except ValueError:
            # Written around the API (its writes are checked): read as missing, not a 500.
            log.warning("setting.unreadable", key=row.key, type=row.type)
    return entries


def _cache(db: Session) -> SettingsCache:
    cache = db.info.get(CACHE_KEY)
    if not isinstance(cache, SettingsCache):
        cache = SettingsCache()
        db.info[CACHE_KEY] = cache
    return cache


def get(db: Session, setting: Setting[T], /) -> T:
    """The value of a declared setting as its type; its default when the row is missing or
    holds a value the declaration refuses (a warning is logged)."""
    if REGISTRY.get(setting.key) is not setting:
        raise LookupError(f"setting {setting.key!r} is not declared in site_settings.registry")
    entry = _cache(db).entries(db).get(setting.key)
    if entry is not None:
        try:
            return setting.validate(entry.value)
        except (ValidationError, ArithmeticError):
            log.warning("setting.out_of_rule", key=setting.key, value=repr(entry.value))
    return copy.deepcopy(setting.default)


def _stored(db: Session, key: str) -> Any:
    entry = _cache(db).entries(db).get(key)
    return None if entry is None else entry.value


def public_values(*, db: Session) -> dict[str, Any]:
    return {
        key: to_json(entry.value)
        for key, entry in sorted(_cache(db).entries(db).items())
        if entry.is_public
    }


def list_settings(*, db: Session) -> list[SettingRow]:
    return list(db.scalars(select(SettingRow).order_by(SettingRow.key)))


MAX_DIGITS = 20  # a number with more digits, or a larger exponent, fits no setting
_INT_LIMIT: int = 10**MAX_DIGITS


def _coerce(key: str, type_: str, value: Any) -> tuple[str, Any]:
    """(text to store, typed value) for ``value`` given as JSON, or ``InvalidInputError``."""
    problem = f"The value does not fit setting {key!r} (type {type_})."

    def refuse(message: str) -> InvalidInputError:
        return InvalidInputError(problem, errors=[{"field": "value", "message": message}])

    if type_ == "string":
        ok = isinstance(value, str)
    elif type_ == "boolean":
        ok = isinstance(value, bool)
    elif type_ == "number":
        ok = (isinstance(value, int | float) and not isinstance(value, bool)) or (
            isinstance(value, str) and _is_decimal(value)
        )
    else:
        ok = True
    if not ok:
        raise refuse(f"expected {type_}")
    if (unfit := _unstorable(value)) is not None:
        raise refuse(unfit)
    typed: Any = value
    if type_ == "number":
        if _too_long(value):
            raise refuse("too many digits")  # before pydantic turns it into a huge int
        typed = Decimal(str(value))
        if not typed.is_finite():
            raise refuse("not finite")
    declared = REGISTRY.get(key)
    if declared is not None:
        try:
            typed = declared.validate(typed)
        except ValidationError as exc:
            raise refuse("; ".join(e["msg"] for e in exc.errors())) from exc
        except ArithmeticError as exc:  # decimal's InvalidOperation from a rule's arithmetic
            raise refuse("out of range") from exc
    return _to_text(type_, typed), typed


def _unstorable(value: Any) -> str | None:
    """Why ``value`` (JSON, walked without recursion) cannot be stored as text and served
    back, or None: a NUL, a lone surrogate, NaN or an infinity."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "holds a NUL character"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "not valid Unicode text (a lone surrogate)"
        elif isinstance(item, float) and not math.isfinite(item):
            return "not finite"
    return None


def _too_long(value: int | float | str) -> bool:
    if isinstance(value, int):
        return abs(value) >= _INT_LIMIT
    number = Decimal(str(value))
    if not number.is_finite():
        return False
    digits, exponent = number.as_tuple()[1:]
    assert isinstance(exponent, int)
    return len(digits) > MAX_DIGITS or abs(exponent) > MAX_DIGITS


def _is_decimal(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except InvalidOperation:
        return False


def _to_text(type_: str, value: Any) -> str:
    if type_ == "boolean":
        return "true" if value else "false"
    if type_ == "json":
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def update_setting(*, db: Session, key: str, value: Any) -> SettingRow:
    setting = db.get(SettingRow, key, with_for_update=True)
    if setting is None:
        raise NotFoundError(f"There is no setting {key!r}.")
    text, typed = _coerce(key, setting.type, value)
    for lower, upper in ORDERED:
        if key in (lower.key, upper.key):
            other_key = upper.key if key == lower.key else lower.key
            other = _stored(db, other_key)
            if other is not None:
                low, high = (typed, other) if key == lower.key else (other, typed)
                if Decimal(str(low)) > Decimal(str(high)):
                    raise InvalidInputError(
                        f"{lower.key} must not exceed {upper.key}.",
                        errors=[{"field": "value", "message": f"conflicts with {other_key}"}],
                    )
    if setting.value != text:
        setting.value = text
        db.flush()
        db.info[_CHANGED_KEY] = True
    return setting


_CHANGED_KEY = "settings_changed"


@event.listens_for(Session, "after_commit")
def _refresh_after_commit(session: Session) -> None:
    # Dropped after the commit, not before: a reload in between would cache the old value.
    if session.info.pop(_CHANGED_KEY, False):
        _cache(session).invalidate()


def admin_view(setting: SettingRow) -> dict[str, Any]:
    try:
        value = to_json(parse_value(setting.value, setting.type))
    except ValueError:
        value = setting.value  # unreadable as its type: shown as stored, for an admin to fix
    return {
        "key": setting.key,
        "value": value,
        "type": setting.type,
        "category": setting.category,
        "description": setting.description,
        "is_public": bool(setting.is_public),
        "updated_at": setting.updated_at,
    }
