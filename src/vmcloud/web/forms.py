"""Form input for panel pages: parsed into the same Pydantic schemas the API uses, and the
problems the services raise turned into messages next to the fields they concern."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from vmcloud.core.errors import ProblemError, RateLimitedError

M = TypeVar("M", bound=BaseModel)


@dataclass
class FormError(Exception):
    """What is wrong with a form: per field, and for the form as a whole."""

    fields: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    status: int = 422
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_problem(
        cls, exc: ProblemError, *, field_map: Mapping[str, str] | None = None
    ) -> FormError:
        """A service's problem, with each of its field errors under the form's field name
        (``field_map`` renames API field names to the form's)."""
        rename = dict(field_map or {})
        fields: dict[str, str] = {}
        for error in exc.errors or []:
            name = error.get("field", "")
            fields.setdefault(rename.get(name, name), error.get("message", "invalid"))
        return cls(
            fields=fields,
            message=exc.detail or exc.title,
            status=exc.status,
            headers=dict(exc.headers or {}),
        )


def _message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def _top_field(loc: tuple[int | str, ...]) -> str:
    return str(loc[0])


def parse(
    schema: type[M],
    data: Mapping[str, Any],
    *,
    lax: bool = False,
    locate: Callable[[tuple[int | str, ...]], str] = _top_field,
) -> M:
    """``data`` validated by ``schema`` (the API's own input schema), or :class:`FormError`
    naming each bad field. ``lax``: also for the schema's strict fields (a form's values are
    text, so a number the API takes only as a JSON number is a string here: "4" is 4, while
    anything Pydantic cannot read as that type, such as "²", stays a field error).
    ``locate`` names the form field of an error's location (default: its top-level field;
    a form that spreads a nested object over several inputs maps the inner names)."""
    try:
        return schema.model_validate(dict(data), strict=False if lax else None)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for error in exc.errors():
            loc = tuple(error.get("loc") or ("form",))
            fields.setdefault(locate(loc), _message(error))
        raise FormError(fields=fields, message="Check the highlighted fields.") from exc


def settle(db: Session, exc: ProblemError, **options: Any) -> FormError:
    """A service refused a form: undo what it flushed (unless the problem keeps it, as a
    failed login keeps its audit row) and say what was wrong, next to the fields (a rate
    limit says how long to wait)."""
    if not exc.commit:
        db.rollback()
    problem = FormError.from_problem(exc, **options)
    if isinstance(exc, RateLimitedError):
        wait = (exc.headers or {}).get("Retry-After", "")
        problem.message = f"Too many attempts; try again in {wait} s."
    return problem


# A form's idempotency key: what the page put there (a hex nonce), never control characters
# or anything the key column and the API's header rules would refuse.
NONCE = re.compile(r"^[\x21-\x7e]{1,200}$")


def check_nonce(nonce: str) -> str:
    """The form's nonce, or :class:`FormError` (400: the page is stale or was tampered with)."""
    if not NONCE.match(nonce):
        raise FormError(
            message="The form expired; reload the page and submit it again.", status=400
        )
    return nonce
