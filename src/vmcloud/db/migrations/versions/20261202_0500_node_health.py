"""compute: node health, kept by the reconciler apart from the admin-set status

``health`` is what the last reconcile pass saw: ``up`` when the node's libvirt connection
answered, ``down`` when it failed (``health_error`` says why), ``unknown`` before the first
pass. ``status`` stays the admin's choice (enabled, disabled, maintenance). Placement takes
only enabled nodes that are not down.

Revision ID: 0020_node_health
Revises: 0019_account_keys_tokens
Create Date: 2026-12-02 05:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_node_health"
down_revision: str | Sequence[str] | None = "0019_account_keys_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "nodes",
        sa.Column("health", sa.String(10), server_default=sa.text("'unknown'"), nullable=False),
    )
    op.add_column("nodes", sa.Column("health_error", sa.String(500), nullable=True))
    op.add_column("nodes", sa.Column("health_changed_at", sa.DateTime(), nullable=True))
    op.create_check_constraint(
        op.f("nodes_health_check"), "nodes", "health IN ('unknown', 'up', 'down')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("nodes_health_check"), "nodes", type_="check")
    op.drop_column("nodes", "health_changed_at")
    op.drop_column("nodes", "health_error")
    op.drop_column("nodes", "health")
