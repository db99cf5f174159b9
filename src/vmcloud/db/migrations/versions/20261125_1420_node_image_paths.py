"""compute: per-node image locations

Revision ID: 0009_node_image_paths
Revises: 0008_compute
Create Date: 2026-11-25 14:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_node_image_paths"
down_revision: str | Sequence[str] | None = "0008_compute"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "nodes",
        sa.Column(
            "image_boot_json",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("nodes", "image_boot_json")
