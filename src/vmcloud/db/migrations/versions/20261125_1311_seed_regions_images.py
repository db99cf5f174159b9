"""seed data: a region, the OS images, and the settings later features read

Revision ID: 0006_seed_regions_images
Revises: 0005_catalog_audit
Create Date: 2026-11-25 13:11:00+00:00
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006_seed_regions_images"
down_revision: str | Sequence[str] | None = "0005_catalog_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

regions = sa.table(
    "regions",
    sa.column("slug", sa.String),
    sa.column("name", sa.String),
    sa.column("description", sa.Text),
    sa.column("status", sa.String),
    sa.column("sort_order", sa.Integer),
)
images = sa.table(
    "images",
    sa.column("slug", sa.String),
    sa.column("name", sa.String),
    sa.column("distro", sa.String),
    sa.column("version", sa.String),
    sa.column("min_disk_gb", sa.Integer),
    sa.column("status", sa.String),
    sa.column("boot_json", JSONB),
    sa.column("sort_order", sa.Integer),
)
settings = sa.table(
    "settings",
    sa.column("key", sa.String),
    sa.column("value", sa.Text),
    sa.column("type", sa.String),
    sa.column("category", sa.String),
    sa.column("description", sa.Text),
    sa.column("is_public", sa.Boolean),
)

REGIONS = [
    {
        "slug": "local",
        "name": "Local",
        "description": "The hypervisors of this installation.",
        "status": "active",
        "sort_order": 10,
    }
]

IMAGES = [
    {
        # Built on the machine by `vmcloud images build-tiny` from Debian's kernel and busybox.
        "slug": "tiny-linux",
        "name": "Tiny Linux (busybox)",
        "distro": "busybox",
        "version": "1.35",
        "min_disk_gb": 1,
        "status": "active",
        "boot_json": {"kind": "kernel", "kernel": None, "initrd": None, "cmdline": "console=ttyS0"},
        "sort_order": 10,
    },
    {
        # Debian's generic cloud image; an operator registers its path before enabling it.
        "slug": "debian-12",
        "name": "Debian 12 (bookworm)",
        "distro": "debian",
        "version": "12",
        "min_disk_gb": 3,
        "status": "disabled",
        "boot_json": {"kind": "disk", "format": "qcow2", "path": None, "cloud_init": True},
        "sort_order": 20,
    },
]

# (key, value, type, category, public, description)
SETTINGS = [
    (
        "compute.default_region",
        "local",
        "string",
        "compute",
        True,
        "Region offered first when a customer creates an instance.",
    ),
    (
        "compute.metrics_interval_seconds",
        "60",
        "number",
        "compute",
        False,
        "How often usage samples are collected from running instances.",
    ),
    (
        "compute.metrics_retention_days",
        "30",
        "number",
        "compute",
        False,
        "Days of instance usage samples kept before they are purged.",
    ),
    (
        "billing.low_balance_warning",
        "5.00",
        "number",
        "billing",
        False,
        "Customers are emailed when their balance falls below this amount.",
    ),
    (
        "billing.payment_providers",
        json.dumps(["sandbox", "manual"]),
        "json",
        "billing",
        True,
        "Payment providers customers may top up with (sandbox, stripe; manual is staff only).",
    ),
    (
        "support.attachment_max_count",
        "5",
        "number",
        "support",
        True,
        "Files one ticket message may carry.",
    ),
    (
        "support.auto_close_days",
        "7",
        "number",
        "support",
        False,
        "Resolved tickets with no reply are closed after this many days.",
    ),
]


def upgrade() -> None:
    op.bulk_insert(regions, REGIONS)
    op.bulk_insert(images, IMAGES)
    op.bulk_insert(
        settings,
        [
            {
                "key": key,
                "value": value,
                "type": type_,
                "category": category,
                "is_public": public,
                "description": description,
            }
            for key, value, type_, category, public, description in SETTINGS
        ],
    )


def downgrade() -> None:
    op.execute(settings.delete().where(settings.c.key.in_([row[0] for row in SETTINGS])))
    op.execute(images.delete().where(images.c.slug.in_([i["slug"] for i in IMAGES])))
    op.execute(regions.delete().where(regions.c.slug.in_([r["slug"] for r in REGIONS])))
