"""Usage samples of running instances: ``resources_json`` and ``instance_metrics``."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vmcloud.compute import nodes
from vmcloud.compute.drivers.base import ComputeDriver, DriverError
from vmcloud.compute.models import Instance, InstanceMetric, Node
from vmcloud.core import events
from vmcloud.core.clock import isoformat_z, utcnow
from vmcloud.core.logging import get_logger
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import METRICS_INTERVAL_SECONDS, METRICS_RETENTION_DAYS

log = get_logger(__name__)


def sample(db: Session, instance: Instance, driver: ComputeDriver) -> bool:
    """Take one usage sample of ``instance`` (announced to its graphs page); ``False`` when
    the node could not say."""
    previous = db.scalar(
        select(InstanceMetric)
        .where(InstanceMetric.instance_id == instance.id)
        .order_by(InstanceMetric.collected_at.desc())
        .limit(1)
    )
    try:
        stats = driver.stats(instance.id)
    except DriverError as exc:
        log.warning("metrics.unavailable", instance_id=str(instance.id), error=str(exc))
        return False
    vcpus = max(1, instance.reserved_vcpus or 1)
    cpu_percent = 0.0
    if previous is not None and stats.cpu_time_ns >= previous.cpu_time_ns:
        wall_ns = (stats.collected_at - previous.collected_at).total_seconds() * 1e9
        if wall_ns > 0:
            used = (stats.cpu_time_ns - previous.cpu_time_ns) / (wall_ns * vcpus)
            cpu_percent = round(min(100.0, max(0.0, used * 100)), 2)
    db.add(
        InstanceMetric(
            instance_id=instance.id,
            collected_at=stats.collected_at,
            cpu_percent=cpu_percent,
            memory_used_mb=stats.memory_used_mb,
            disk_read_bytes=stats.disk_read_bytes,
            disk_write_bytes=stats.disk_write_bytes,
            net_rx_bytes=stats.net_rx_bytes,
            net_tx_bytes=stats.net_tx_bytes,
            cpu_time_ns=stats.cpu_time_ns,
        )
    )
    instance.resources_json = {
        "cpu_percent": cpu_percent,
        "memory_used_mb": stats.memory_used_mb,
        "disk_read_bytes": stats.disk_read_bytes,
        "disk_write_bytes": stats.disk_write_bytes,
        "net_rx_bytes": stats.net_rx_bytes,
        "net_tx_bytes": stats.net_tx_bytes,
        "collected_at": isoformat_z(stats.collected_at),
    }
    events.announce(db, kind="metric", user_id=instance.user_id, id=instance.id)
    return True


def collect_all(db: Session) -> int:
    """Sample every running instance whose last sample is older than the interval; purge
    samples past the retention. Returns how many were sampled."""
    interval = site_settings.get(db, METRICS_INTERVAL_SECONDS)
    sampled = 0
    for node in db.scalars(select(Node).where(Node.status != "disabled")).all():
        driver = nodes.driver_for(node)
        running = db.scalars(
            select(Instance).where(
                Instance.node_id == node.id,
                Instance.status == "running",
                Instance.deleted_at.is_(None),
            )
        ).all()
        for instance in running:
            last = db.scalar(
                select(func.max(InstanceMetric.collected_at)).where(
                    InstanceMetric.instance_id == instance.id
                )
            )
            if last is not None and utcnow() - last < timedelta(seconds=interval - 5):
                continue
            sampled += sample(db, instance, driver)
    retention = site_settings.get(db, METRICS_RETENTION_DAYS)
    db.execute(
        delete(InstanceMetric).where(
            InstanceMetric.collected_at < utcnow() - timedelta(days=retention)
        )
    )
    db.flush()
    return sampled
