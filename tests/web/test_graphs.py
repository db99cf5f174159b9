"""The graphs page through the real app (JavaScript off): the usage table with units, the
range links, the empty state, the CSV download, the stream's fragment, and bad input."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import add_sample, make_node, make_pool
from tests.web.conftest import log_in
from vmcloud.accounts.models import User
from vmcloud.billing import flows
from vmcloud.compute import metric_series
from vmcloud.compute.models import Instance
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.core.clock import utcnow
from vmcloud.web.customer import graphs

ROW = re.compile(r"<tr data-t=")


@pytest.fixture
def owner(db: Session, panel: TestClient) -> User:
    make_node(db)
    make_pool(db, "198.18.78.0/28")
    user = make_user(db, balance="100.00")
    db.commit()
    log_in(panel, user.username, PASSWORD)
    return user


@pytest.fixture
def instance(db: Session, owner: User) -> Instance:
    body = InstanceCreate(
        name="graphed", product="nano", region="local", image="tiny-linux",
        billing_cycle="monthly",
    )  # fmt: skip
    instance = flows.order_instance(db=db, owner=owner, body=body)
    db.commit()
    return instance


def _seed(db: Session, instance: Instance, count: int) -> None:
    """``count`` samples a minute apart, all inside one 7-day bucket (the one before the
    current), so the week's view averages them into one point whatever the time of day."""
    week_step = int(metric_series.RANGES["7d"].total_seconds()) // metric_series.MAX_POINTS
    since_epoch = (utcnow() - datetime(2000, 1, 1)).total_seconds()
    bucket = datetime(2000, 1, 1) + timedelta(seconds=since_epoch // week_step * week_step)
    start = bucket - timedelta(seconds=week_step) + timedelta(minutes=1)
    for n in range(count):
        add_sample(db, instance, start + timedelta(minutes=n), n * 6_000_000)
    db.commit()


def test_the_table_shows_each_sample_with_units(
    panel: TestClient, db: Session, instance: Instance
) -> None:
    _seed(db, instance, 3)
    page = panel.get(f"/instances/{instance.id}/graphs")
    assert page.status_code == 200
    html = page.text
    assert len(ROW.findall(html)) == 3
    assert "<caption" in html and "Usage over the last 1 hour" in html
    assert "97.7 KiB/s" in html  # 6,000,000 bytes a minute read from the disk: 100,000 B/s
    assert '<td data-k="net_rx" data-v="">—</td>' in html  # the first has nothing before
    assert f'hx-sse:connect="/instances/{instance.id}/graphs/stream?range=1h"' in html
    assert 'href="/static/vendor/uplot/uPlot.min.css"' in html
    for range_ in ("1h", "24h", "7d", "30d"):
        assert f'href="/instances/{instance.id}/graphs?range={range_}"' in html
    assert f'href="/instances/{instance.id}/graphs.csv?range=1h"' in html
    week = panel.get(f"/instances/{instance.id}/graphs", params={"range": "7d"}).text
    assert "averaged per 28 minutes" in week and len(ROW.findall(week)) == 1


def test_no_samples_shows_an_empty_state(panel: TestClient, instance: Instance) -> None:
    html = panel.get(f"/instances/{instance.id}/graphs").text
    assert "No usage samples in this range yet" in html
    assert "<table" not in html


def test_the_csv_download(panel: TestClient, db: Session, instance: Instance) -> None:
    _seed(db, instance, 2)
    answer = panel.get(f"/instances/{instance.id}/graphs.csv", params={"range": "24h"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == 'attachment; filename="usage-24h.csv"'
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == graphs.CSV_COLUMNS
    assert len(rows) in (2, 3)  # two samples, in one 4-minute bucket or two
    assert rows[1][0].endswith("Z")


def test_the_stream_sends_the_whole_data_region(
    db: Session, owner: User, instance: Instance
) -> None:
    _seed(db, instance, 2)
    sent = graphs._rows(db, owner, instance.id, "1h")
    assert sent is not None
    assert sent.startswith('<div id="metrics-data" hx-swap-oob="true">')
    assert len(ROW.findall(sent)) == 2


@pytest.mark.parametrize("suffix", ["/graphs?range=2h", "/graphs.csv?range=1y", "/graphs?range="])
def test_a_bad_range_is_a_422(panel: TestClient, instance: Instance, suffix: str) -> None:
    assert panel.get(f"/instances/{instance.id}{suffix}").status_code == 422


def test_another_users_instance_is_404(panel: TestClient, db: Session, instance: Instance) -> None:
    stranger = make_user(db)
    db.commit()
    log_in(panel, stranger.username, PASSWORD)
    for suffix in ("/graphs", "/graphs.csv", "/graphs/stream"):
        assert panel.get(f"/instances/{instance.id}{suffix}").status_code == 404, suffix
