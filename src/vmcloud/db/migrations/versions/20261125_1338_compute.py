"""compute: hypervisor nodes, IP pools, usage samples; instances gain their node

Adds to the seed's instances only a nullable node_id and indexes (one live instance per address).

Revision ID: 0008_compute
Revises: 0007_username_lower_unique
Create Date: 2026-11-25 13:38:58.076656+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_compute"
down_revision: str | Sequence[str] | None = "0007_username_lower_unique"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ip_pools",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("region_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("cidr", postgresql.CIDR(), nullable=False),
        sa.Column("gateway", postgresql.INET(), nullable=True),
        sa.Column(
            "reserved",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'active'"), nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=True
        ),
        sa.Column(
            "updated_at", sa.DateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=True
        ),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("ip_pools_status_check")),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("ip_pools_region_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("ip_pools_pkey")),
        sa.UniqueConstraint("name", name=op.f("ip_pools_name_key")),
    )
    op.create_index("ix_ip_pools_region_id", "ip_pools", ["region_id"], unique=False)
    op.create_table(
        "nodes",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("region_id", sa.Uuid(), nullable=False),
        sa.Column(
            "driver", sa.String(length=20), server_default=sa.text("'libvirt'"), nullable=False
        ),
        sa.Column("uri", sa.String(length=500), nullable=False),
        sa.Column("storage_dir", sa.String(length=500), nullable=False),
        sa.Column(
            "network_mode", sa.String(length=20), server_default=sa.text("'user'"), nullable=False
        ),
        sa.Column("bridge", sa.String(length=64), nullable=True),
        sa.Column(
            "virt_type", sa.String(length=10), server_default=sa.text("'qemu'"), nullable=False
        ),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("disk_gb", sa.Integer(), nullable=False),
        sa.Column(
            "cpu_overcommit",
            sa.Numeric(precision=5, scale=2),
            server_default=sa.text("4.0"),
            nullable=False,
        ),
        sa.Column(
            "ram_overcommit",
            sa.Numeric(precision=5, scale=2),
            server_default=sa.text("1.0"),
            nullable=False,
        ),
        sa.Column(
            "disk_overcommit",
            sa.Numeric(precision=5, scale=2),
            server_default=sa.text("1.0"),
            nullable=False,
        ),
        sa.Column("allocated_vcpus", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("allocated_memory_mb", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("allocated_disk_gb", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'enabled'"), nullable=False
        ),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=True
        ),
        sa.Column(
            "updated_at", sa.DateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=True
        ),
        sa.CheckConstraint("driver IN ('libvirt', 'fake')", name=op.f("nodes_driver_check")),
        sa.CheckConstraint(
            "network_mode IN ('user', 'bridge')", name=op.f("nodes_network_mode_check")
        ),
        sa.CheckConstraint(
            "status IN ('enabled', 'disabled', 'maintenance')", name=op.f("nodes_status_check")
        ),
        sa.CheckConstraint("virt_type IN ('qemu', 'kvm')", name=op.f("nodes_virt_type_check")),
        sa.CheckConstraint(
            "allocated_vcpus <= vcpus * cpu_overcommit"
            " AND allocated_memory_mb <= memory_mb * ram_overcommit"
            " AND allocated_disk_gb <= disk_gb * disk_overcommit",
            name=op.f("nodes_not_overbooked_check"),
        ),
        sa.CheckConstraint(
            "allocated_vcpus >= 0 AND allocated_memory_mb >= 0 AND allocated_disk_gb >= 0",
            name=op.f("nodes_allocated_check"),
        ),
        sa.CheckConstraint(
            "vcpus > 0 AND memory_mb > 0 AND disk_gb > 0", name=op.f("nodes_capacity_check")
        ),
        sa.ForeignKeyConstraint(["region_id"], ["regions.id"], name=op.f("nodes_region_id_fkey")),
        sa.PrimaryKeyConstraint("id", name=op.f("nodes_pkey")),
        sa.UniqueConstraint("name", name=op.f("nodes_name_key")),
    )
    op.create_index("ix_nodes_region_id", "nodes", ["region_id"], unique=False)
    op.create_table(
        "instance_metrics",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.Uuid(), nullable=False),
        sa.Column("collected_at", sa.DateTime(), nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=False),
        sa.Column("memory_used_mb", sa.Integer(), nullable=False),
        sa.Column("disk_read_bytes", sa.BigInteger(), nullable=False),
        sa.Column("disk_write_bytes", sa.BigInteger(), nullable=False),
        sa.Column("net_rx_bytes", sa.BigInteger(), nullable=False),
        sa.Column("net_tx_bytes", sa.BigInteger(), nullable=False),
        sa.Column("cpu_time_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("instance_metrics_instance_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("instance_metrics_pkey")),
    )
    op.create_index(
        "ix_instance_metrics_instance_time",
        "instance_metrics",
        ["instance_id", "collected_at"],
        unique=False,
    )
    op.add_column("instances", sa.Column("node_id", sa.Uuid(), nullable=True))
    op.create_index("ix_instances_node_id", "instances", ["node_id"], unique=False)
    op.create_index(
        "uq_instances_live_ip_address",
        "instances",
        ["ip_address"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL AND ip_address IS NOT NULL"),
    )
    op.create_foreign_key(op.f("instances_node_id_fkey"), "instances", "nodes", ["node_id"], ["id"])


def downgrade() -> None:
    op.drop_constraint(op.f("instances_node_id_fkey"), "instances", type_="foreignkey")
    op.drop_index(
        "uq_instances_live_ip_address",
        table_name="instances",
        postgresql_where=sa.text("deleted_at IS NULL AND ip_address IS NOT NULL"),
    )
    op.drop_index("ix_instances_node_id", table_name="instances")
    op.drop_column("instances", "node_id")
    op.drop_index("ix_instance_metrics_instance_time", table_name="instance_metrics")
    op.drop_table("instance_metrics")
    op.drop_index("ix_nodes_region_id", table_name="nodes")
    op.drop_table("nodes")
    op.drop_index("ix_ip_pools_region_id", table_name="ip_pools")
    op.drop_table("ip_pools")
