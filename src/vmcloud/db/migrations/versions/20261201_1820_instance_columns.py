"""compute: an instance's load-bearing state in columns, out of metadata_json

Region, image, billing cycle, the capacity reserved on its node, the time of its last status
change and its error reason move from ``metadata_json`` (keys ``region``, ``image``,
``billing_cycle``, ``reserved``, ``transition_at``, ``error``) into nullable columns; the copy of
the node's name (``node``) goes too, as ``node_id`` says it. A region or image slug that names
no row stays in ``metadata_json``. The downgrade writes the keys back and drops the columns.

Revision ID: 0013_instance_columns
Revises: 0012_support
Create Date: 2026-12-01 18:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_instance_columns"
down_revision: str | Sequence[str] | None = "0012_support"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOVED = ("billing_cycle", "reserved", "transition_at", "error", "node")
COLUMNS = (
    "region_id",
    "image_id",
    "billing_cycle",
    "reserved_vcpus",
    "reserved_memory_mb",
    "reserved_disk_gb",
    "transition_at",
    "error_reason",
)


def upgrade() -> None:
    op.add_column("instances", sa.Column("region_id", sa.Uuid(), nullable=True))
    op.add_column("instances", sa.Column("image_id", sa.Uuid(), nullable=True))
    op.add_column("instances", sa.Column("billing_cycle", sa.String(length=20), nullable=True))
    op.add_column("instances", sa.Column("reserved_vcpus", sa.Integer(), nullable=True))
    op.add_column("instances", sa.Column("reserved_memory_mb", sa.Integer(), nullable=True))
    op.add_column("instances", sa.Column("reserved_disk_gb", sa.Integer(), nullable=True))
    op.add_column("instances", sa.Column("transition_at", sa.DateTime(), nullable=True))
    op.add_column("instances", sa.Column("error_reason", sa.Text(), nullable=True))
    op.create_foreign_key(
        op.f("instances_region_id_fkey"), "instances", "regions", ["region_id"], ["id"]
    )
    op.create_foreign_key(
        op.f("instances_image_id_fkey"), "instances", "images", ["image_id"], ["id"]
    )

    op.execute(
        """
        UPDATE instances SET
            billing_cycle = CASE WHEN metadata_json->>'billing_cycle'
                                      IN ('hourly', 'monthly', 'yearly')
                                 THEN metadata_json->>'billing_cycle' END,
            transition_at = (metadata_json->>'transition_at')::timestamp,
            error_reason = metadata_json->>'error',
            reserved_vcpus = (metadata_json->'reserved'->>'vcpus')::int,
            reserved_memory_mb = (metadata_json->'reserved'->>'memory_mb')::int,
            reserved_disk_gb = (metadata_json->'reserved'->>'disk_gb')::int
        WHERE metadata_json IS NOT NULL AND jsonb_typeof(metadata_json) = 'object'
        """
    )
    # The reservation's keys are all there or the plan is used (compute.service.reserved_need).
    op.execute(
        """
        UPDATE instances SET reserved_vcpus = NULL, reserved_memory_mb = NULL,
                             reserved_disk_gb = NULL
        WHERE reserved_vcpus IS NULL OR reserved_memory_mb IS NULL OR reserved_disk_gb IS NULL
        """
    )
    op.execute(
        """
        UPDATE instances i SET region_id = r.id FROM regions r
        WHERE jsonb_typeof(i.metadata_json) = 'object' AND r.slug = i.metadata_json->>'region'
        """
    )
    op.execute(
        """
        UPDATE instances i SET image_id = g.id FROM images g
        WHERE jsonb_typeof(i.metadata_json) = 'object' AND g.slug = i.metadata_json->>'image'
        """
    )
    moved = ", ".join(f"'{key}'" for key in MOVED)
    op.execute(
        f"UPDATE instances SET metadata_json = metadata_json - ARRAY[{moved}]"
        " WHERE jsonb_typeof(metadata_json) = 'object'"
    )
    op.execute(
        "UPDATE instances SET metadata_json = metadata_json - 'region' WHERE region_id IS NOT NULL"
    )
    op.execute(
        "UPDATE instances SET metadata_json = metadata_json - 'image' WHERE image_id IS NOT NULL"
    )
    op.create_check_constraint(
        op.f("instances_billing_cycle_check"),
        "instances",
        "billing_cycle IN ('hourly', 'monthly', 'yearly')",
    )


def downgrade() -> None:
    op.execute(
        """
        UPDATE instances i SET metadata_json = CASE
                WHEN jsonb_typeof(i.metadata_json) = 'object' THEN i.metadata_json
                ELSE '{}'::jsonb END
            || jsonb_strip_nulls(jsonb_build_object(
                'region', (SELECT r.slug FROM regions r WHERE r.id = i.region_id),
                'image', (SELECT g.slug FROM images g WHERE g.id = i.image_id),
                'node', (SELECT n.name FROM nodes n WHERE n.id = i.node_id),
                'billing_cycle', i.billing_cycle,
                'transition_at', to_char(i.transition_at, 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                'error', i.error_reason,
                'reserved', CASE WHEN i.reserved_vcpus IS NOT NULL THEN jsonb_build_object(
                    'vcpus', i.reserved_vcpus,
                    'memory_mb', i.reserved_memory_mb,
                    'disk_gb', i.reserved_disk_gb) END
            ))
        WHERE i.metadata_json IS NOT NULL OR i.region_id IS NOT NULL OR i.image_id IS NOT NULL
           OR i.billing_cycle IS NOT NULL OR i.transition_at IS NOT NULL
           OR i.error_reason IS NOT NULL OR i.reserved_vcpus IS NOT NULL
        """
    )
    op.drop_constraint(op.f("instances_billing_cycle_check"), "instances", type_="check")
    op.drop_constraint(op.f("instances_image_id_fkey"), "instances", type_="foreignkey")
    op.drop_constraint(op.f("instances_region_id_fkey"), "instances", type_="foreignkey")
    for column in COLUMNS:
        op.drop_column("instances", column)
