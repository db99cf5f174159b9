"""compute: a free list of addresses per IP pool, so allocation never reads the used set

``ip_pool_free_addresses`` holds addresses ready to be leased; ``ip_pool_cursors`` says how far
into each pool the list was filled. Both start empty: a pool's list is filled a chunk at a time
by the allocations themselves (existing live addresses are skipped when a chunk is listed).

Revision ID: 0017_ip_allocation
Revises: 0016_ledger_checkpoints
Create Date: 2026-12-01 20:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017_ip_allocation"
down_revision: str | Sequence[str] | None = "0016_ledger_checkpoints"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ip_pool_free_addresses",
        sa.Column("pool_id", sa.Uuid(), nullable=False),
        sa.Column("address", postgresql.INET(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["ip_pools.id"],
            name=op.f("ip_pool_free_addresses_pool_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pool_id", "address", name=op.f("ip_pool_free_addresses_pkey")),
    )
    op.create_table(
        "ip_pool_cursors",
        sa.Column("pool_id", sa.Uuid(), nullable=False),
        sa.Column("filled_to", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["ip_pools.id"],
            name=op.f("ip_pool_cursors_pool_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pool_id", name=op.f("ip_pool_cursors_pkey")),
    )


def downgrade() -> None:
    op.drop_table("ip_pool_cursors")
    op.drop_table("ip_pool_free_addresses")
