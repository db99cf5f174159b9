"""audit and ledger lists: one index per filter the API offers, in the lists' keyset order

Every filter of ``GET /admin/audit-logs`` and of the ledger lists (``GET /billing/transactions``,
``GET /admin/transactions``) gets a composite index ``(filter column, time, id)``, so a page is
read by one backward index scan that stops after the page, whatever the table's size and however
rare the value. ``(time, id)`` serves the unfiltered lists and the ``since``/``until`` range (the
seed's single-column time indexes leave ties of one timestamp, such as a billing run's entries,
to be sorted). Building them locks writes to the two tables for the build (about a minute per
index at ten million rows).

Revision ID: 0015_history_indexes
Revises: 0014_instance_list_indexes
Create Date: 2026-12-10 09:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015_history_indexes"
down_revision: str | Sequence[str] | None = "0014_instance_list_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "audit_logs": (
        ("ix_audit_logs_timestamp_id", ("timestamp", "id")),
        ("ix_audit_logs_user_id_timestamp_id", ("user_id", "timestamp", "id")),
        ("ix_audit_logs_action_timestamp_id", ("action", "timestamp", "id")),
        ("ix_audit_logs_entity_type_timestamp_id", ("entity_type", "timestamp", "id")),
        ("ix_audit_logs_entity_id_timestamp_id", ("entity_id", "timestamp", "id")),
    ),
    "transactions": (
        ("ix_transactions_created_at_id", ("created_at", "id")),
        ("ix_transactions_user_id_created_at_id", ("user_id", "created_at", "id")),
        ("ix_transactions_type_created_at_id", ("type", "created_at", "id")),
        ("ix_transactions_status_created_at_id", ("status", "created_at", "id")),
        (
            "ix_transactions_subscription_id_created_at_id",
            ("subscription_id", "created_at", "id"),
        ),
    ),
}


def upgrade() -> None:
    for table, indexes in INDEXES.items():
        for name, columns in indexes:
            op.create_index(name, table, list(columns), unique=False)
        op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    for table, indexes in INDEXES.items():
        for name, _columns in reversed(indexes):
            op.drop_index(name, table_name=table)
