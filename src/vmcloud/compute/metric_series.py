"""An instance's usage over a range, for graphs: the stored samples with the disk and network
counters turned into rates, averaged into at most :data:`MAX_POINTS` buckets, in SQL.

Disk and network figures are cumulative byte counters that restart from 0 with the VM (and
so does ``cpu_time_ns``). A sample's rate is the difference from the sample before it over
the seconds between them. A sample may follow a restart, and then has no rates (a gap in the
graph, never a wrong rate), when: any counter went down; the instance's last start
(``started_at``) lies between the two samples; or more than :data:`MAX_GAP_INTERVALS` sampling
intervals (``compute.metrics_interval_seconds``) passed since the sample before it, since
counters that restarted during a long gap can have climbed past their old values. The first
sample of a range is measured against the last one before it, so a range starts with rates
too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from vmcloud.compute.models import Instance
from vmcloud.core.clock import utcnow
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import METRICS_INTERVAL_SECONDS, METRICS_RETENTION_DAYS

Range = Literal["1h", "24h", "7d", "30d"]
RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
MAX_POINTS = 360  # buckets per range (361 at most: the first one starts before the range)
COUNTERS = ("disk_read", "disk_write", "net_rx", "net_tx")
# Samples come once an interval (a missed job run makes one gap twice as long): a longer gap
# between two samples may hide a restart.
MAX_GAP_INTERVALS = 3


@dataclass(frozen=True)
class Point:
    at: datetime  # the start of the bucket
    samples: int
    cpu_percent: float
    cpu_percent_max: float
    memory_used_mb: float
    disk_read_bps: float | None
    disk_write_bps: float | None
    net_rx_bps: float | None
    net_tx_bps: float | None


@dataclass(frozen=True)
class Series:
    range: str
    since: datetime
    until: datetime
    step_seconds: int
    retention_days: int
    clipped: bool  # the range reaches past the retention: it starts at the oldest kept sample
    points: list[Point]


def _each(template: str, joiner: str = ", ") -> str:
    return joiner.join(template.format(c=c) for c in COUNTERS)


_DELTAS = _each("(m.{c}_bytes - lag(m.{c}_bytes) OVER w)::float8 AS {c}_delta")
_WENT_DOWN = _each("OR m.{c}_bytes < lag(m.{c}_bytes) OVER w", " ")
_RATES = _each(
    "CASE WHEN NOT restarted AND dt > 0 AND dt <= :max_gap THEN {c}_delta / dt END AS {c}_bps"
)
_AVERAGES = _each("avg({c}_bps) AS {c}_bps")


_SERIES = text(
    f"""
WITH start AS (
    SELECT coalesce(max(collected_at), :since) AS at FROM instance_metrics
    WHERE instance_id = :instance_id AND collected_at < :since
), deltas AS (
    SELECT m.collected_at, m.cpu_percent, m.memory_used_mb,
        extract(epoch FROM m.collected_at - lag(m.collected_at) OVER w)::float8 AS dt,
        {_DELTAS},
        coalesce(m.cpu_time_ns < lag(m.cpu_time_ns) OVER w {_WENT_DOWN}, false)
            OR coalesce(lag(m.collected_at) OVER w < CAST(:started_at AS timestamp)
                AND m.collected_at >= CAST(:started_at AS timestamp), false) AS restarted
    FROM instance_metrics m, start
    WHERE m.instance_id = :instance_id AND m.collected_at >= start.at
        AND m.collected_at <= :until
    WINDOW w AS (ORDER BY m.collected_at, m.id)
), rates AS (
    SELECT collected_at, cpu_percent, memory_used_mb, {_RATES}
    FROM deltas WHERE collected_at >= :since
)
SELECT date_bin(make_interval(secs => :step), collected_at, TIMESTAMP '2000-01-01') AS at,
    count(*) AS samples, avg(cpu_percent) AS cpu_percent, max(cpu_percent) AS cpu_percent_max,
    avg(memory_used_mb)::float8 AS memory_used_mb,
    {_AVERAGES}
FROM rates GROUP BY 1 ORDER BY 1
"""  # built from the constant COUNTERS only
)


def window(
    db: Session, range_: str, now: datetime | None = None
) -> tuple[datetime, datetime, bool]:
    """``(since, until, clipped)`` of a range ending now, clipped to the retention."""
    until = now or utcnow()
    wanted = until - RANGES[range_]
    oldest = until - timedelta(days=site_settings.get(db, METRICS_RETENTION_DAYS))
    return max(wanted, oldest), until, oldest > wanted


def series(*, db: Session, instance: Instance, range_: str, now: datetime | None = None) -> Series:
    """The instance's usage over the last ``range_`` (one of :data:`RANGES`), in buckets of
    a 360th of the range (10 s for an hour: one sample each at the shortest interval)."""
    since, until, clipped = window(db, range_, now)
    step = int(RANGES[range_].total_seconds()) // MAX_POINTS
    interval = site_settings.get(db, METRICS_INTERVAL_SECONDS)
    params = {
        "instance_id": instance.id,
        "since": since,
        "until": until,
        "step": step,
        "max_gap": interval * MAX_GAP_INTERVALS,
        "started_at": instance.started_at,
    }
    rows = db.execute(_SERIES, params)
    return Series(
        range=range_,
        since=since,
        until=until,
        step_seconds=step,
        retention_days=site_settings.get(db, METRICS_RETENTION_DAYS),
        clipped=clipped,
        points=[Point(**row._mapping) for row in rows],
    )
