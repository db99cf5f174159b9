"""billing: a checkpoint for the incremental ledger check

``ledger_checkpoints`` (one row) holds the horizon up to which every completed entry is summed
per user in ``ledger_checkpoint_sums``; the incremental check reads only the entries processed
since, through a partial index on ``transactions.processed_at`` of completed entries. The first
check (or ``vmcloud billing verify --full``) fills both.

Revision ID: 0016_ledger_checkpoints
Revises: 0015_history_indexes
Create Date: 2026-12-10 09:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_ledger_checkpoints"
down_revision: str | Sequence[str] | None = "0015_history_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_checkpoints",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("horizon", sa.DateTime(), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.Column("full_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ledger_checkpoints_single_row_check")),
        sa.PrimaryKeyConstraint("id", name=op.f("ledger_checkpoints_pkey")),
    )
    op.create_table(
        "ledger_checkpoint_sums",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("settled", sa.Numeric(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("ledger_checkpoint_sums_user_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("ledger_checkpoint_sums_pkey")),
    )
    op.create_index(
        "ix_transactions_completed_processed_at",
        "transactions",
        ["processed_at"],
        unique=False,
        postgresql_where=sa.text("status = 'completed'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_transactions_completed_processed_at",
        table_name="transactions",
        postgresql_where=sa.text("status = 'completed'"),
    )
    op.drop_table("ledger_checkpoint_sums")
    op.drop_table("ledger_checkpoints")
