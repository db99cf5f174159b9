"""backup: the record of backup runs and restore drills (for /metrics and the staff), and the
settings of the schedule: the hour (UTC) of the daily backup and the retention counts.

Revision ID: 0023_backup_drills
Revises: 0022_failed_job_events
Create Date: 2026-12-02 06:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_backup_drills"
down_revision: str | Sequence[str] | None = "0022_failed_job_events"
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
SETTINGS = [
    ("backup.hour", "2", "Hour of the day (UTC) at which the daily backup starts."),
    ("backup.retention_full", "12", "Full (monthly) backups kept."),
    (
        "backup.retention_diff",
        "30",
        "Differential (daily) backups kept; point-in-time restore reaches back this far.",
    ),
]


def upgrade() -> None:
    op.create_table(
        "backup_runs",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("type", sa.String(10), nullable=False),
        sa.Column("label", sa.String(100), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('monthly', 'daily', 'manual')", name=op.f("backup_runs_kind_check")
        ),
        sa.CheckConstraint("outcome IN ('ok', 'failed')", name=op.f("backup_runs_outcome_check")),
        sa.PrimaryKeyConstraint("id", name=op.f("backup_runs_pkey")),
    )
    op.create_index("ix_backup_runs_kind_started_at", "backup_runs", ["kind", "started_at"])
    op.create_table(
        "backup_drills",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("backup_label", sa.String(100), nullable=True),
        sa.Column("rto_seconds", sa.Float(), nullable=True),
        sa.Column("rpo_seconds", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('passed', 'failed')", name=op.f("backup_drills_outcome_check")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("backup_drills_pkey")),
    )
    op.create_index("ix_backup_drills_started_at", "backup_drills", ["started_at"])
    op.bulk_insert(
        settings,
        [
            {
                "key": key,
                "value": value,
                "type": "number",
                "category": "backup",
                "is_public": False,
                "description": description,
            }
            for key, value, description in SETTINGS
        ],
    )


def downgrade() -> None:
    op.execute(settings.delete().where(settings.c.key.in_([key for key, _, _ in SETTINGS])))
    op.drop_index("ix_backup_drills_started_at", table_name="backup_drills")
    op.drop_table("backup_drills")
    op.drop_index("ix_backup_runs_kind_started_at", table_name="backup_runs")
    op.drop_table("backup_runs")
