"""Compute: customers' virtual machines (seed table ``instances``), the hypervisor nodes they
run on, the IP pools their addresses come from, and their usage samples."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import CIDR, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import Uuid

from vmcloud.catalog.models import Image, Region
from vmcloud.db.base import Base, created_at, updated_at, uuid_pk
from vmcloud.db.types import Inet

INSTANCE_STATUSES = (
    "pending",
    "provisioning",
    "running",
    "stopped",
    "starting",
    "stopping",
    "rebooting",
    "suspended",
    "error",
    "deleting",
    "deleted",
)
TRANSITIONAL = ("pending", "provisioning", "starting", "stopping", "rebooting", "deleting")


class Instance(Base):
    __tablename__ = "instances"
    __audit__ = "instance"
    # metadata_json carries the guest's configuration, user_data included (may hold secrets);
    # transition_at changes with every status, which the audit row already records.
    __audit_ignore__ = ("resources_json", "metadata_json", "transition_at")
    __table_args__ = (
        Index("idx_instances_user_id", "user_id"),
        Index("idx_instances_product_id", "product_id"),
        Index("idx_instances_status", "status"),
        Index("idx_instances_created_at", "created_at"),
        # -- added by 0008: one live instance per address, and the node it runs on.
        Index(
            "uq_instances_live_ip_address",
            "ip_address",
            unique=True,
            postgresql_where=text("deleted_at IS NULL AND ip_address IS NOT NULL"),
        ),
        Index("ix_instances_node_id", "node_id"),
        # -- added by 0013
        CheckConstraint("billing_cycle IN ('hourly', 'monthly', 'yearly')", name="billing_cycle"),
        # -- added by 0014: one per filter of the instance lists, ending in their sort key
        # (created_at, id), over live rows, so a keyset page reads one page of rows.
        *(
            Index(name, *columns, postgresql_where=text("deleted_at IS NULL"))
            for name, columns in {
                "ix_instances_live_created": ("created_at", "id"),
                "ix_instances_live_user_created": ("user_id", "created_at", "id"),
                "ix_instances_live_user_status_created": ("user_id", "status", "created_at", "id"),
                "ix_instances_live_status_created": ("status", "created_at", "id"),
                "ix_instances_live_node_created": ("node_id", "created_at", "id"),
            }.items()
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id"))
    product_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("products.id"))
    name: Mapped[str] = mapped_column(String(255))
    hostname: Mapped[str | None] = mapped_column(String(255))
    ip_address: Mapped[str | None] = mapped_column(Inet())
    status: Mapped[str | None] = mapped_column(String(50), server_default=text("'pending'"))
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    resources_json: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime | None] = created_at()
    started_at: Mapped[datetime | None] = mapped_column(DateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime())
    # -- added
    node_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), ForeignKey("nodes.id"))
    # -- added by 0013: what the order chose, what it holds on its node (released exactly,
    # whatever its plan becomes later), when its status last changed and why it failed.
    region_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), ForeignKey("regions.id"))
    image_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), ForeignKey("images.id"))
    billing_cycle: Mapped[str | None] = mapped_column(String(20))
    reserved_vcpus: Mapped[int | None] = mapped_column(Integer)
    reserved_memory_mb: Mapped[int | None] = mapped_column(Integer)
    reserved_disk_gb: Mapped[int | None] = mapped_column(Integer)
    transition_at: Mapped[datetime | None] = mapped_column(DateTime())
    error_reason: Mapped[str | None] = mapped_column(Text)

    # Read by the API's views (slugs and the node's name); many-to-one, so each region, image
    # and node is loaded once per session however many instances name it.
    node: Mapped[Node | None] = relationship(viewonly=True)
    region: Mapped[Region | None] = relationship(viewonly=True)
    image: Mapped[Image | None] = relationship(viewonly=True)


class Node(Base):
    """A hypervisor host. ``allocated_*`` is what live instances reserved on it; a create
    reserves with one guarded UPDATE, so concurrent creates can never overbook a node."""

    __tablename__ = "nodes"
    __audit__ = "node"
    __audit_ignore__ = (
        "allocated_vcpus",
        "allocated_memory_mb",
        "allocated_disk_gb",
        "last_seen_at",
        "health",
        "health_error",
        "health_changed_at",
    )
    __table_args__ = (
        CheckConstraint("status IN ('enabled', 'disabled', 'maintenance')", name="status"),
        CheckConstraint("driver IN ('libvirt', 'fake')", name="driver"),
        CheckConstraint("network_mode IN ('user', 'bridge')", name="network_mode"),
        CheckConstraint("virt_type IN ('qemu', 'kvm')", name="virt_type"),
        CheckConstraint("health IN ('unknown', 'up', 'down')", name="health"),
        CheckConstraint("vcpus > 0 AND memory_mb > 0 AND disk_gb > 0", name="capacity"),
        CheckConstraint(
            "allocated_vcpus >= 0 AND allocated_memory_mb >= 0 AND allocated_disk_gb >= 0",
            name="allocated",
        ),
        CheckConstraint(
            "allocated_vcpus <= vcpus * cpu_overcommit"
            " AND allocated_memory_mb <= memory_mb * ram_overcommit"
            " AND allocated_disk_gb <= disk_gb * disk_overcommit",
            name="not_overbooked",
        ),
        Index("ix_nodes_region_id", "region_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(100), unique=True)
    region_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("regions.id"))
    driver: Mapped[str] = mapped_column(String(20), server_default=text("'libvirt'"))
    uri: Mapped[str] = mapped_column(String(500))
    storage_dir: Mapped[str] = mapped_column(String(500))
    network_mode: Mapped[str] = mapped_column(String(20), server_default=text("'user'"))
    bridge: Mapped[str | None] = mapped_column(String(64))
    virt_type: Mapped[str] = mapped_column(String(10), server_default=text("'qemu'"))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    cpu_overcommit: Mapped[Decimal] = mapped_column(Numeric(5, 2), server_default=text("4.0"))
    ram_overcommit: Mapped[Decimal] = mapped_column(Numeric(5, 2), server_default=text("1.0"))
    disk_overcommit: Mapped[Decimal] = mapped_column(Numeric(5, 2), server_default=text("1.0"))
    allocated_vcpus: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    allocated_memory_mb: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    allocated_disk_gb: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    status: Mapped[str] = mapped_column(String(20), server_default=text("'enabled'"))
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime())
    # What the reconciler saw last (0020): up, down (health_error says why) or unknown.
    health: Mapped[str] = mapped_column(String(10), server_default=text("'unknown'"))
    health_error: Mapped[str | None] = mapped_column(String(500))
    health_changed_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime | None] = created_at()
    updated_at: Mapped[datetime | None] = updated_at()
    # Where this node keeps each image's files, by image slug, when not where the image's own
    # boot_json says: {"debian-12": {"path": "/srv/images/debian-12.qcow2"}}.
    image_boot_json: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb")
    )


class IpPool(Base):
    """Addresses a region hands out: ``cidr`` minus the network, broadcast, gateway and
    ``reserved`` addresses."""

    __tablename__ = "ip_pools"
    __audit__ = "ip_pool"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'disabled')", name="status"),
        Index("ix_ip_pools_region_id", "region_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    region_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("regions.id"))
    name: Mapped[str] = mapped_column(String(100), unique=True)
    cidr: Mapped[str] = mapped_column(CIDR)
    gateway: Mapped[str | None] = mapped_column(Inet())
    reserved: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    status: Mapped[str] = mapped_column(String(20), server_default=text("'active'"))
    created_at: Mapped[datetime | None] = created_at()
    updated_at: Mapped[datetime | None] = updated_at()


class IpPoolFreeAddress(Base):
    """An address of a pool ready to be leased (added by 0017). Allocation deletes the first
    one (``FOR UPDATE SKIP LOCKED``: concurrent orders take different rows without waiting);
    a deleted instance's address comes back. Filled a chunk at a time, up to the pool's
    :class:`IpPoolCursor`, so a pool of any size costs only what it hands out."""

    __tablename__ = "ip_pool_free_addresses"

    pool_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("ip_pools.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(Inet(), primary_key=True)


class IpPoolCursor(Base):
    """How far into its pool the free list was ever filled: host offsets up to ``filled_to``
    (from the network address) have been listed once (added by 0017)."""

    __tablename__ = "ip_pool_cursors"

    pool_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("ip_pools.id", ondelete="CASCADE"), primary_key=True
    )
    filled_to: Mapped[int] = mapped_column(BigInteger)


class InstanceMetric(Base):
    """One usage sample of a running instance (kept ``compute.metrics_retention_days``)."""

    __tablename__ = "instance_metrics"
    __table_args__ = (Index("ix_instance_metrics_instance_time", "instance_id", "collected_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    instance_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("instances.id"))
    collected_at: Mapped[datetime] = mapped_column(DateTime())
    cpu_percent: Mapped[float] = mapped_column(Float)
    memory_used_mb: Mapped[int] = mapped_column(Integer)
    disk_read_bytes: Mapped[int] = mapped_column(BigInteger)
    disk_write_bytes: Mapped[int] = mapped_column(BigInteger)
    net_rx_bytes: Mapped[int] = mapped_column(BigInteger)
    net_tx_bytes: Mapped[int] = mapped_column(BigInteger)
    cpu_time_ns: Mapped[int] = mapped_column(BigInteger)
