"""Typed site settings stored as text in ``settings``."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from vmcloud.site_settings.models import Setting

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


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


def get_value(*, db: Session, key: str, default: Any = None) -> Any:
    setting = db.get(Setting, key)
    if setting is None:
        return default
    return parse_value(setting.value, setting.type)
