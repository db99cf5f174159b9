"""The usage series behind the graphs page: rates from the byte counters (restarts leave a
gap, never a negative rate), buckets for long ranges, the range clipped to the retention, and
the API route's parameters and owners."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import add_sample, make_node, make_pool
from tests.helpers import bearer, login
from vmcloud.accounts.models import User
from vmcloud.billing import flows
from vmcloud.compute import metric_series
from vmcloud.compute.models import Instance
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.core.clock import utcnow
from vmcloud.site_settings import service as site_settings

NOW = datetime(2026, 12, 1, 12, 0, 0)


@pytest.fixture
def owner(db: Session) -> User:
    make_node(db)
    make_pool(db, "198.18.77.0/28")
    return make_user(db, balance="100.00")


@pytest.fixture
def instance(db: Session, owner: User) -> Instance:
    body = InstanceCreate(
        name="graphs-1", product="nano", region="local", image="tiny-linux",
        billing_cycle="monthly",
    )  # fmt: skip
    return flows.order_instance(db=db, owner=owner, body=body)


def series(db: Session, instance: Instance, range_: str = "1h") -> metric_series.Series:
    return metric_series.series(db=db, instance=instance, range_=range_, now=NOW)


def test_rates_come_from_counter_differences(db: Session, instance: Instance) -> None:
    # Before the range: the first sample in it is measured against this one.
    add_sample(db, instance, NOW - timedelta(minutes=61), 0)
    add_sample(db, instance, NOW - timedelta(minutes=59), 12_000)  # 100 B/s over 2 min
    add_sample(db, instance, NOW - timedelta(minutes=58), 24_000)  # 200 B/s over 60 s
    points = series(db, instance).points
    assert len(points) == 2
    assert [p.disk_read_bps for p in points] == [100.0, 200.0]
    assert [p.disk_write_bps for p in points] == [200.0, 400.0]
    assert [p.net_rx_bps for p in points] == [300.0, 600.0]
    assert [p.net_tx_bps for p in points] == [400.0, 800.0]
    assert points[0].at == NOW - timedelta(minutes=59)  # 10 s buckets: a sample's own time


def test_a_restart_leaves_a_gap_never_a_negative_rate(db: Session, instance: Instance) -> None:
    add_sample(db, instance, NOW - timedelta(minutes=3), 600_000)
    add_sample(db, instance, NOW - timedelta(minutes=2), 6_000)  # the VM restarted
    add_sample(db, instance, NOW - timedelta(minutes=1), 12_000)
    points = series(db, instance).points
    assert [p.net_rx_bps for p in points] == [None, None, 300.0]
    assert all(p.cpu_percent == 10.0 for p in points)


def test_a_long_gap_or_a_start_between_two_samples_leaves_a_gap(
    db: Session, instance: Instance
) -> None:
    """Counters that restarted can climb past their old values before the next sample: a
    sample more than three sampling intervals after the one before it, or the first after
    the instance's last start, has no rates either."""
    add_sample(db, instance, NOW - timedelta(minutes=30), 600_000)
    add_sample(db, instance, NOW - timedelta(minutes=20), 700_000)  # 10 min: stopped meanwhile
    add_sample(db, instance, NOW - timedelta(minutes=19), 706_000)
    instance.started_at = NOW - timedelta(minutes=18, seconds=30)
    add_sample(db, instance, NOW - timedelta(minutes=18), 712_000)  # started in between
    add_sample(db, instance, NOW - timedelta(minutes=17), 718_000)
    assert [p.disk_read_bps for p in series(db, instance).points] == [
        None, None, 100.0, None, 100.0
    ]  # fmt: skip
    # Sampled every 5 minutes, 10 minutes is two intervals: a rate.
    site_settings.update_setting(db=db, key="compute.metrics_interval_seconds", value=300)
    db.commit()
    rates = [p.disk_read_bps for p in series(db, instance).points]
    assert rates[1] is not None and round(rates[1], 2) == 166.67


def test_long_ranges_average_into_buckets(db: Session, instance: Instance) -> None:
    start = NOW - timedelta(hours=2)
    for minute in range(120):  # one sample a minute for two hours
        add_sample(db, instance, start + timedelta(minutes=minute), minute * 60, cpu=minute % 4)
    found = series(db, instance, "24h")
    assert found.step_seconds == 240
    assert len(found.points) == 30  # four samples in each 4-minute bucket
    assert {p.samples for p in found.points} == {4}
    assert {p.cpu_percent for p in found.points} == {1.5}
    assert {p.cpu_percent_max for p in found.points} == {3.0}
    assert {p.disk_read_bps for p in found.points[1:]} == {1.0}
    for range_, span in metric_series.RANGES.items():
        step = metric_series.series(db=db, instance=instance, range_=range_).step_seconds
        assert span.total_seconds() / step <= metric_series.MAX_POINTS


def test_ranges_are_clipped_to_the_retention(db: Session, instance: Instance) -> None:
    site_settings.update_setting(db=db, key="compute.metrics_retention_days", value=3)
    db.commit()  # (settings are read again after a commit)
    add_sample(db, instance, NOW - timedelta(days=5), 0)  # not purged yet, but past retention
    add_sample(db, instance, NOW - timedelta(days=1), 0)
    week = series(db, instance, "7d")
    assert week.clipped and week.retention_days == 3
    assert week.since == NOW - timedelta(days=3)
    assert len(week.points) == 1
    day = series(db, instance, "24h")
    assert not day.clipped and day.since == NOW - timedelta(days=1)


def test_the_series_route(client: TestClient, db: Session, owner: User, instance: Instance) -> None:
    now = utcnow()
    add_sample(db, instance, now - timedelta(minutes=2), 0)
    add_sample(db, instance, now - timedelta(minutes=1), 60)
    db.commit()
    headers = bearer(login(client, owner.username, PASSWORD))
    url = f"/api/v1/instances/{instance.id}/metrics/series"
    body = client.get(url, headers=headers).json()
    assert body["range"] == "1h" and body["step_seconds"] == 10 and body["clipped"] is False
    assert [p["net_tx_bps"] for p in body["points"]] == [None, 4.0]
    assert body["points"][0]["at"].endswith("Z")
    assert len(client.get(url, params={"range": "30d"}, headers=headers).json()["points"]) == 1
    for bad in ("2h", "", "1H", "1h;"):
        answer = client.get(url, params={"range": bad}, headers=headers)
        assert answer.status_code == 422, bad
        assert answer.headers["content-type"].startswith("application/problem+json")
    stranger = make_user(db)
    db.commit()
    others = bearer(login(client, stranger.username, PASSWORD))
    assert client.get(url, headers=others).status_code == 404
