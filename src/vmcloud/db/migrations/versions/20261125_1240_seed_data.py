"""seed data: default catalogue and site settings

A data migration, kept apart from the schema migrations as the seed's strategy asks. Its
downgrade removes exactly the rows it inserted (by slug and key) and nothing an operator added.

Revision ID: 0002_seed_data
Revises: 0001_initial
Create Date: 2026-11-25 12:40:00+00:00
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002_seed_data"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the tables as this revision knows them: later model changes must not change
# what this migration does.
products = sa.table(
    "products",
    sa.column("name", sa.String),
    sa.column("slug", sa.String),
    sa.column("description", sa.Text),
    sa.column("category", sa.String),
    sa.column("specs_json", JSONB),
    sa.column("pricing_json", JSONB),
    sa.column("features_json", JSONB),
    sa.column("status", sa.String),
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

# Hourly rates are the monthly price spread over 730 hours (the average month), rounded up to a
# tenth of a cent; yearly is ten months' price.
PRODUCTS = [
    {
        "name": "Nano",
        "slug": "nano",
        "description": "For small services, bots and experiments.",
        "specs": {"vcpus": 1, "memory_mb": 512, "disk_gb": 10, "bandwidth_gb": 500},
        "pricing": {"hourly": "0.006", "monthly": "4.00", "yearly": "40.00"},
        "features": ["1 IPv4 address", "SSD storage", "Serial console"],
    },
    {
        "name": "Micro",
        "slug": "micro",
        "description": "A small web site or a personal VPN.",
        "specs": {"vcpus": 1, "memory_mb": 1024, "disk_gb": 25, "bandwidth_gb": 1000},
        "pricing": {"hourly": "0.009", "monthly": "6.00", "yearly": "60.00"},
        "features": ["1 IPv4 address", "SSD storage", "Serial console"],
    },
    {
        "name": "Small",
        "slug": "small",
        "description": "Applications with a database beside them.",
        "specs": {"vcpus": 2, "memory_mb": 2048, "disk_gb": 50, "bandwidth_gb": 2000},
        "pricing": {"hourly": "0.017", "monthly": "12.00", "yearly": "120.00"},
        "features": ["1 IPv4 address", "SSD storage", "Serial console"],
    },
    {
        "name": "Medium",
        "slug": "medium",
        "description": "Busy sites, CI runners and game servers.",
        "specs": {"vcpus": 2, "memory_mb": 4096, "disk_gb": 80, "bandwidth_gb": 4000},
        "pricing": {"hourly": "0.033", "monthly": "24.00", "yearly": "240.00"},
        "features": ["1 IPv4 address", "SSD storage", "Serial console"],
    },
    {
        "name": "Large",
        "slug": "large",
        "description": "Production workloads that need room to grow.",
        "specs": {"vcpus": 4, "memory_mb": 8192, "disk_gb": 160, "bandwidth_gb": 5000},
        "pricing": {"hourly": "0.066", "monthly": "48.00", "yearly": "480.00"},
        "features": ["1 IPv4 address", "SSD storage", "Serial console", "Priority support"],
    },
]

# (key, value, type, category, public, description)
SETTINGS = [
    ("site.name", "VMCloud", "string", "site", True, "Name shown in the panel and in emails."),
    (
        "site.support_email",
        "support@example.com",
        "string",
        "site",
        True,
        "Address customers can write to; the sender of notification emails.",
    ),
    (
        "auth.registration_enabled",
        "true",
        "boolean",
        "auth",
        True,
        "Whether new customers may sign up through POST /auth/register.",
    ),
    (
        "billing.currency",
        "USD",
        "string",
        "billing",
        True,
        "ISO 4217 code of the one currency all balances and prices are in.",
    ),
    (
        "billing.grace_days",
        "7",
        "number",
        "billing",
        True,
        "Days a past-due subscription's instance stays suspended before it is deleted.",
    ),
    (
        "billing.hourly_min_balance",
        "5.00",
        "number",
        "billing",
        True,
        "Balance a customer needs to create an hourly-billed instance.",
    ),
    (
        "billing.prorated_refunds",
        "true",
        "boolean",
        "billing",
        True,
        "Refund the unused whole days when a monthly or yearly instance is deleted.",
    ),
    (
        "billing.topup_min",
        "5.00",
        "number",
        "billing",
        True,
        "Smallest top-up amount accepted.",
    ),
    (
        "billing.topup_max",
        "1000.00",
        "number",
        "billing",
        True,
        "Largest single top-up amount accepted.",
    ),
    (
        "compute.max_instances_per_user",
        "10",
        "number",
        "compute",
        True,
        "Live instances one customer may have at a time.",
    ),
    (
        "support.categories",
        json.dumps(["general", "billing", "technical", "abuse", "sales"]),
        "json",
        "support",
        True,
        "Categories a customer can choose when opening a ticket.",
    ),
    (
        "support.attachment_max_bytes",
        str(10 * 1024 * 1024),
        "number",
        "support",
        True,
        "Largest file that can be attached to a ticket message, in bytes.",
    ),
    (
        "support.attachment_types",
        json.dumps(["image/png", "image/jpeg", "image/gif", "application/pdf", "text/plain"]),
        "json",
        "support",
        True,
        "Content types accepted as ticket attachments.",
    ),
]


def upgrade() -> None:
    op.bulk_insert(
        products,
        [
            {
                "name": p["name"],
                "slug": p["slug"],
                "description": p["description"],
                "category": "standard",
                "specs_json": p["specs"],
                "pricing_json": p["pricing"],
                "features_json": p["features"],
                "status": "active",
                "sort_order": index * 10,
            }
            for index, p in enumerate(PRODUCTS, start=1)
        ],
    )
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
    op.execute(products.delete().where(products.c.slug.in_([p["slug"] for p in PRODUCTS])))
