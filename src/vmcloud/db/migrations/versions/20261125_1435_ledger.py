"""ledger invariants: balances never negative, positive amounts, known types and states,
one entry per provider transaction

Revision ID: 0010_ledger
Revises: 0009_node_image_paths
Create Date: 2026-11-25 14:35:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_ledger"
down_revision: str | Sequence[str] | None = "0009_node_image_paths"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_check_constraint(op.f("users_balance_not_negative_check"), "users", "balance >= 0")
    op.create_check_constraint(
        op.f("transactions_amount_positive_check"), "transactions", "amount > 0"
    )
    op.create_check_constraint(
        op.f("transactions_type_check"),
        "transactions",
        "type IN ('payment', 'credit', 'refund', 'charge', 'debit')",
    )
    op.create_check_constraint(
        op.f("transactions_status_check"),
        "transactions",
        "status IN ('pending', 'completed', 'failed', 'cancelled')",
    )
    op.create_index(
        "uq_transactions_provider_id",
        "transactions",
        ["payment_provider", "provider_transaction_id"],
        unique=True,
        postgresql_where=sa.text("provider_transaction_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_transactions_provider_id", table_name="transactions")
    op.drop_constraint(op.f("transactions_status_check"), "transactions", type_="check")
    op.drop_constraint(op.f("transactions_type_check"), "transactions", type_="check")
    op.drop_constraint(op.f("transactions_amount_positive_check"), "transactions", type_="check")
    op.drop_constraint(op.f("users_balance_not_negative_check"), "users", type_="check")
