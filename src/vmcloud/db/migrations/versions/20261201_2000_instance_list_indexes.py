"""compute: an index for each way the instance lists filter, ending in their sort key

``GET /instances`` (a customer's own, optionally by status) and ``GET /admin/instances`` (by
customer, status or node, or none) list live instances newest first by ``(created_at, id)``
with keyset pages. Each index below starts with a filter's equality column(s) and ends in that
sort key, over live rows only, so a page reads one page of rows whatever the number of rows
that match (a customer with 2,000 instances, a node with 5,000, the whole fleet).

Revision ID: 0014_instance_list_indexes
Revises: 0013_instance_columns
Create Date: 2026-12-01 20:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_instance_list_indexes"
down_revision: str | Sequence[str] | None = "0013_instance_columns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")
INDEXES = {
    "ix_instances_live_created": ["created_at", "id"],
    "ix_instances_live_user_created": ["user_id", "created_at", "id"],
    "ix_instances_live_user_status_created": ["user_id", "status", "created_at", "id"],
    "ix_instances_live_status_created": ["status", "created_at", "id"],
    "ix_instances_live_node_created": ["node_id", "created_at", "id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "instances", columns, postgresql_where=LIVE)


def downgrade() -> None:
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="instances")
