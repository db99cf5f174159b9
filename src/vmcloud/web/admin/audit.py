"""``/admin/audit``: the audit trail for admins (the API's list and filters: user, entity,
action, time), each row's changes as an old → new table, its address and agent; CSV; new
rows arrive at the top live (``audit`` events, announced once per transaction that wrote
rows)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import service as accounts
from vmcloud.audit import service as audit
from vmcloud.audit.models import AuditLog
from vmcloud.audit.schemas import AuditLogRead
from vmcloud.core.errors import ProblemError
from vmcloud.core.pagination import MAX_LIMIT, PageParams
from vmcloud.db.session import DbSession
from vmcloud.web.admin import access
from vmcloud.web.admin.access import AdminPanelUser
from vmcloud.web.admin.listing import CsvPage, Fields, csv_download
from vmcloud.web.render import fragment

router = APIRouter(include_in_schema=False)

CSV_COLUMNS = list(AuditLogRead.model_fields)
Text = Annotated[str | None, Query(max_length=320)]
Cursor = Annotated[str | None, Query(max_length=1024)]
FORM_FIELDS = ("user", "entity", "entity_id", "action", "since", "until")


@dataclass(frozen=True)
class AuditView:
    form: dict[str, str]
    errors: dict[str, str]
    where: audit.LogFilter = field(default_factory=audit.LogFilter)
    cursor: str | None = None

    @property
    def query(self) -> str:
        return urlencode({k: v for k, v in self.form.items() if v})


@dataclass(frozen=True)
class Change:
    name: str
    old: str
    new: str


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def changes_of(row: AuditLog) -> list[Change]:
    """The fields a row changed, each with its value before and after (— for none)."""
    old, new = row.old_values or {}, row.new_values or {}
    names = sorted(set(old) | set(new))
    return [Change(n, _shown(old.get(n)), _shown(new.get(n))) for n in names]


def read_view(db: Session, values: dict[str, str | None], cursor: str | None) -> AuditView:
    form = {name: (values.get(name) or "").strip() for name in FORM_FIELDS}
    read = Fields()
    where = audit.LogFilter(
        user_id=read.user(db, "user", form["user"]),
        entity_type=form["entity"][:100] or None,
        entity_id=read.ident("entity_id", form["entity_id"]),
        action=form["action"][:255] or None,
        since=read.moment("since", form["since"]),
        until=read.moment("until", form["until"]),
    )
    return AuditView(form, read.errors, where, cursor)


def rows(db: Session, view: AuditView) -> dict[str, Any]:
    context: dict[str, Any] = {"view": view, "logs": [], "next_cursor": None, "emails": {}}
    if view.errors:
        return context
    params = PageParams(cursor=view.cursor)
    logs, next_cursor = audit.list_logs(db=db, params=params, where=view.where)
    context.update(
        logs=[(log, changes_of(log)) for log in logs],
        next_cursor=next_cursor,
        emails=accounts.emails_of(db=db, user_ids=[log.user_id for log in logs]),
    )
    return context


def audit_view(
    db: DbSession,
    cursor: Cursor = None,
    who: Annotated[Text, Query(alias="user")] = None,
    entity: Text = None,
    entity_id: Text = None,
    action: Text = None,
    since: Text = None,
    until: Text = None,
) -> AuditView:
    """The filter parameters the page, its stream and its CSV take (the CSV reads every
    page itself and ignores a cursor)."""
    values = {
        "user": who, "entity": entity, "entity_id": entity_id, "action": action,
        "since": since, "until": until,
    }  # fmt: skip
    return read_view(db, values, cursor)


AuditQuery = Annotated[AuditView, Depends(audit_view)]


@router.get("/admin/audit")
def audit_page(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    view: AuditQuery,
) -> Response:
    try:
        context = rows(db, view)
    except ProblemError as exc:  # a cursor this list did not make
        view = AuditView(view.form, {"cursor": exc.detail or exc.title}, view.where)
        context = rows(db, view)
    status = 422 if view.errors else 200
    return access.page(request, "admin/audit.html", user, context, area="audit", status=status)


@router.get("/admin/audit/stream")
async def audit_stream(
    request: Request,
    user: AdminPanelUser,
    view: AuditQuery,
) -> Response:
    def resync(stream_db: Session) -> str | None:
        if view.errors or view.cursor:
            return None  # an older page or a refused filter: new rows never show there
        return fragment("admin/_audit_rows.html", oob=True, **rows(stream_db, view))

    return await access.stream(
        request,
        resync=resync,
        redraw_on=lambda event: event.get("kind") == "audit",
        admin_only=True,
    )


@router.get("/admin/audit.csv")
def audit_csv(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    view: AuditQuery,
) -> Response:
    if view.errors:
        context = rows(db, view)
        return access.page(request, "admin/audit.html", user, context, area="audit", status=422)

    def read_page(page_db: Session, cursor: str | None) -> CsvPage:
        params = PageParams(limit=MAX_LIMIT, cursor=cursor)
        logs, cursor = audit.list_logs(db=page_db, params=params, where=view.where)
        return [AuditLogRead.model_validate(log).model_dump(mode="json") for log in logs], cursor

    return csv_download(request, "audit.csv", CSV_COLUMNS, read_page)
