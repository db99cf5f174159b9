"""An instance's usage graphs (``/instances/{id}/graphs``): CPU, memory, and disk and network
rates over 1 h, 24 h, 7 d or 30 d, drawn by uPlot from the page's own table (which is the
no-JavaScript and screen-reader view of the same data), live as samples are stored, and as
CSV. The data is the API's series (``compute.metric_series``)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts.models import User
from vmcloud.compute import metric_series
from vmcloud.compute.models import Instance
from vmcloud.compute.schemas import MetricPoint
from vmcloud.db.session import DbSession
from vmcloud.web import live
from vmcloud.web.customer import instances_views as views
from vmcloud.web.customer.billing import safe_cell
from vmcloud.web.customer.instances import check_visible, stream_user
from vmcloud.web.render import fragment, render
from vmcloud.web.session import PanelUser

router = APIRouter(include_in_schema=False)

CSV_COLUMNS = list(MetricPoint.model_fields)
RANGE_LABELS = {"1h": "1 hour", "24h": "24 hours", "7d": "7 days", "30d": "30 days"}


def _epoch(at: datetime) -> int:
    """A stored (naive UTC) time as Unix seconds, the x values of the charts."""
    return int(at.replace(tzinfo=UTC).timestamp())


def _context(db: Session, instance: Instance, range_: str) -> dict[str, Any]:
    found = metric_series.series(db=db, instance=instance, range_=range_)
    return {"instance": instance, "series": found, "ranges": RANGE_LABELS, "epoch": _epoch}


@router.get("/instances/{instance_id}/graphs")
def graphs_page(
    request: Request,
    db: DbSession,
    user: PanelUser,
    instance_id: uuid.UUID,
    range: metric_series.Range = "1h",
) -> Response:
    instance = views.owned(db, user, instance_id)
    return render(
        request, "instances/graphs.html", {"section": "instances", **_context(db, instance, range)}
    )


def _rows(db: Session, user: User | None, instance_id: uuid.UUID, range_: str) -> str | None:
    if user is None:
        return None
    instance = views.owned(db, user, instance_id)
    return fragment("instances/_graph_data.html", oob=True, **_context(db, instance, range_))


@router.get("/instances/{instance_id}/graphs/stream")
async def graphs_stream(
    request: Request, instance_id: uuid.UUID, range: metric_series.Range = "1h"
) -> Response:
    """On (re)connect and on each new sample of this instance: the whole data region (the
    table and the empty state), from which the page's script redraws the charts."""
    await live.read_db(request, check_visible, request, instance_id)

    def resync(db: Session) -> str | None:
        return _rows(db, stream_user(db, request), instance_id, range)

    def render_event(db: Session, event: live.Event) -> str | None:
        if event.get("kind") != "metric" or event.get("id") != str(instance_id):
            return None
        return resync(db)

    return await live.stream(
        request, resync=resync, render=render_event, follows=("metric", instance_id)
    )


@router.get("/instances/{instance_id}/graphs.csv")
def graphs_csv(
    db: DbSession, user: PanelUser, instance_id: uuid.UUID, range: metric_series.Range = "1h"
) -> Response:
    """The page's points (at most 361 rows) with the API's fields as columns."""
    instance = views.owned(db, user, instance_id)
    found = metric_series.series(db=db, instance=instance, range_=range)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for point in found.points:
        values = MetricPoint.model_validate(point).model_dump(mode="json")
        writer.writerow([safe_cell(values[column]) for column in CSV_COLUMNS])
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="usage-{range}.csv"'},
    )
