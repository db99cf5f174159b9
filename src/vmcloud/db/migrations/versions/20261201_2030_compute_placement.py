"""compute: the ``compute.placement`` setting (spread or pack instances over a region's nodes)

Seeds the setting the scheduler reads (``compute/nodes.py``): ``spread`` puts a new instance on
the enabled node with the most free memory, ``pack`` on the one with the least that still fits.
Nodes need no new column: a node's network mode (``user`` or ``bridge``) is already its own.

Revision ID: 0018_compute_placement
Revises: 0017_ip_allocation
Create Date: 2026-12-02 10:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_compute_placement"
down_revision: str | Sequence[str] | None = "0017_ip_allocation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

settings = sa.table(
    "settings",
    sa.column("key", sa.String),
    sa.column("value", sa.Text),
    sa.column("type", sa.String),
    sa.column("category", sa.String),
    sa.column("is_public", sa.Boolean),
    sa.column("description", sa.Text),
)
KEY = "compute.placement"


def upgrade() -> None:
    op.bulk_insert(
        settings,
        [
            {
                "key": KEY,
                "value": "spread",
                "type": "string",
                "category": "compute",
                "is_public": False,
                "description": (
                    "Where new instances go among the region's enabled nodes: spread (the node"
                    " with the most free memory) or pack (the least free memory that still fits)."
                ),
            }
        ],
    )


def downgrade() -> None:
    op.execute(settings.delete().where(settings.c.key == KEY))
