"""catalogue: regions, images, status checks; audit rows made immutable

Revision ID: 0005_catalog_audit
Revises: 0004_job_queue
Create Date: 2026-11-25 13:10:36.705185+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_catalog_audit"
down_revision: str | Sequence[str] | None = "0004_job_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("distro", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("min_disk_gb", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "status", sa.String(length=50), server_default=sa.text("'active'"), nullable=False
        ),
        sa.Column(
            "boot_json",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("sort_order", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=True
        ),
        sa.Column(
            "updated_at", sa.DateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=True
        ),
        sa.CheckConstraint(
            "status IN ('active', 'deprecated', 'disabled')", name=op.f("images_status_check")
        ),
        sa.CheckConstraint("min_disk_gb > 0", name=op.f("images_min_disk_gb_check")),
        sa.PrimaryKeyConstraint("id", name=op.f("images_pkey")),
        sa.UniqueConstraint("slug", name=op.f("images_slug_key")),
    )
    op.create_index("ix_images_status", "images", ["status"], unique=False)
    op.create_table(
        "regions",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "status", sa.String(length=50), server_default=sa.text("'active'"), nullable=False
        ),
        sa.Column("sort_order", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=True
        ),
        sa.Column(
            "updated_at", sa.DateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=True
        ),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("regions_status_check")),
        sa.PrimaryKeyConstraint("id", name=op.f("regions_pkey")),
        sa.UniqueConstraint("slug", name=op.f("regions_slug_key")),
    )
    op.create_index("ix_regions_status", "regions", ["status"], unique=False)

    op.create_check_constraint(
        op.f("products_status_check"), "products", "status IN ('active', 'hidden', 'archived')"
    )
    op.create_check_constraint(
        op.f("settings_type_check"), "settings", "type IN ('string', 'number', 'boolean', 'json')"
    )

    # The audit trail is append-only: the database itself refuses to change or remove a row,
    # whoever asks.
    op.execute(
        """
        CREATE FUNCTION audit_logs_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_logs rows cannot be %', lower(TG_OP)
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$;
        CREATE TRIGGER audit_logs_append_only
            BEFORE UPDATE OR DELETE ON audit_logs
            FOR EACH ROW EXECUTE FUNCTION audit_logs_refuse_change();
        CREATE TRIGGER audit_logs_no_truncate
            BEFORE TRUNCATE ON audit_logs
            FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_refuse_change();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_logs_no_truncate ON audit_logs")
    op.execute("DROP TRIGGER audit_logs_append_only ON audit_logs")
    op.execute("DROP FUNCTION audit_logs_refuse_change()")
    op.drop_constraint(op.f("settings_type_check"), "settings", type_="check")
    op.drop_constraint(op.f("products_status_check"), "products", type_="check")
    op.drop_index("ix_regions_status", table_name="regions")
    op.drop_table("regions")
    op.drop_index("ix_images_status", table_name="images")
    op.drop_table("images")
