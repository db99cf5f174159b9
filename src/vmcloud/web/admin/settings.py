"""``/admin/settings`` (admin only): every site setting by group, each edited with the widget
its declaration calls for (``site_settings.registry``): a checkbox for a yes/no, a number
input with the declared bounds, a choice of the allowed values, one line per item for a list,
JSON for other JSON, text otherwise. Saving calls the service ``PUT /admin/settings/{key}``
calls; its refusal is shown next to the field, with its status."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby
from typing import Annotated, Any, Literal, get_args, get_origin

from fastapi import Form, Request
from fastapi.routing import APIRouter
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts.models import User
from vmcloud.core.errors import NotFoundError, ProblemError
from vmcloud.db.session import DbSession
from vmcloud.site_settings import service
from vmcloud.site_settings.registry import REGISTRY, Setting
from vmcloud.web.admin.access import AdminPanelUser, page
from vmcloud.web.forms import FormError, settle
from vmcloud.web.render import redirect

router = APIRouter(prefix="/admin/settings", include_in_schema=False)

Kind = Literal["checkbox", "number", "select", "lines", "json", "text"]


@dataclass(frozen=True)
class Widget:
    kind: Kind
    minimum: str | None = None
    maximum: str | None = None
    step: str | None = None
    choices: tuple[str, ...] = ()


def _core(kind: Any) -> Any:
    """The type under ``Annotated[...]`` (money, labels), or the type itself."""
    return get_args(kind)[0] if get_origin(kind) is Annotated else kind


def _bound(value: int | Decimal | None) -> str | None:
    return None if value is None else str(value)


def widget_for(row_type: str, declared: Setting[Any] | None) -> Widget:
    """The input a setting is edited with: from its declaration, else from its stored type."""
    if declared is None:
        plain: dict[str, Kind] = {"boolean": "checkbox", "number": "number", "json": "json"}
        return Widget(plain.get(row_type, "text"), step="any" if row_type == "number" else None)
    kind = _core(declared.kind if declared.kind is not None else type(declared.default))
    if kind is bool:
        return Widget("checkbox")
    if get_origin(kind) is Literal:
        return Widget("select", choices=tuple(str(c) for c in get_args(kind)))
    if get_origin(kind) is list:
        # One line per item for plain values; a list of objects is edited as JSON.
        values = all(
            _core(arg) in (str, int, Decimal) or get_origin(_core(arg)) is Literal
            for arg in get_args(kind)
        )
        return Widget("lines" if values else "json")
    if kind in (int, Decimal):
        low = declared.ge if declared.ge is not None else declared.gt
        step = "1" if kind is int else "0.01"
        return Widget("number", _bound(low), _bound(declared.le), step)
    if row_type == "json":
        return Widget("json")
    return Widget("text")


@dataclass(frozen=True)
class Item:
    key: str
    value: Any
    type: str
    category: str
    description: str | None
    is_public: bool
    widget: Widget

    @property
    def text(self) -> str:
        """The value as its input shows it."""
        if self.widget.kind == "lines" and isinstance(self.value, list):
            return "\n".join(str(v) for v in self.value)
        if self.widget.kind == "json" or isinstance(self.value, list | dict):
            return json.dumps(self.value, indent=2)
        return "" if self.value is None else str(self.value)


def items(db: Session) -> list[tuple[str, list[Item]]]:
    rows = []
    for row in service.list_settings(db=db):
        view = service.admin_view(row)
        category = view["category"] or row.key.split(".")[0]
        widget = widget_for(row.type, REGISTRY.get(row.key))
        rows.append(
            Item(
                key=row.key,
                value=view["value"],
                type=row.type,
                category=category,
                description=view["description"],
                is_public=view["is_public"],
                widget=widget,
            )
        )
    rows.sort(key=lambda i: (i.category, i.key))
    return [(category, list(group)) for category, group in groupby(rows, key=lambda i: i.category)]


def _page(
    request: Request,
    db: Session,
    user: User,
    *,
    failed: str | None = None,
    problem: FormError | None = None,
    typed: str | None = None,
) -> Response:
    context = {"groups": items(db), "failed": failed, "problem": problem, "typed": typed}
    status = problem.status if problem else 200
    return page(request, "admin/settings.html", user, context, area="settings", status=status)


@router.get("")
def settings_page(request: Request, db: DbSession, user: AdminPanelUser) -> Response:
    return _page(request, db, user)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _value(widget: Widget, text: str, ticked: bool) -> Any:
    """What the form sent, as the JSON value the API's ``PUT`` would take (an unticked box
    sends nothing: false)."""
    if widget.kind == "checkbox":
        return ticked
    if widget.kind == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if widget.kind == "json":
        try:
            return json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else exc.args[0]
            raise FormError(
                fields={"value": f"not JSON: {reason}"}, message="The value is not JSON."
            ) from None
    return text.strip()


@router.post("/{key}")
def save_setting(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    key: str,
    value: Annotated[str, Form(max_length=100_000)] = "",
    ticked: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    row = next((i for _, group in items(db) for i in group if i.key == key), None)
    if row is None:
        raise NotFoundError(f"There is no setting {key!r}.")  # as the API's PUT says
    try:
        service.update_setting(db=db, key=key, value=_value(row.widget, value, ticked == "on"))
    except FormError as problem:
        return _page(request, db, user, failed=key, problem=problem, typed=value)
    except ProblemError as exc:
        return _page(request, db, user, failed=key, problem=settle(db, exc), typed=value)
    return redirect(request, f"/admin/settings#s-{key}", flash=f"{key} is saved.")
