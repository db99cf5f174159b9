"""accounts security: refresh token families, TOTP replay guard, recovery codes, rate limits

Adds to seed tables only new nullable columns, checks and indexes; no seed column changes.

Revision ID: 0003_accounts_security
Revises: 0002_seed_data
Create Date: 2026-11-25 13:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_accounts_security"
down_revision: str | Sequence[str] | None = "0002_seed_data"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # users: invariants the application relies on, and the last TOTP time step accepted.
    op.add_column("users", sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    op.create_check_constraint(
        op.f("users_role_check"), "users", "role IN ('customer', 'support', 'admin')"
    )
    op.create_check_constraint(
        op.f("users_status_check"), "users", "status IN ('active', 'suspended', 'banned', 'closed')"
    )
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)

    # refresh_tokens: one family per login; rotation links each token to its successor.
    op.add_column("refresh_tokens", sa.Column("family_id", sa.Uuid(), nullable=True))
    op.add_column("refresh_tokens", sa.Column("replaced_by_id", sa.Uuid(), nullable=True))
    op.add_column("refresh_tokens", sa.Column("ip_address", postgresql.INET(), nullable=True))
    op.add_column("refresh_tokens", sa.Column("user_agent", sa.Text(), nullable=True))
    op.execute("UPDATE refresh_tokens SET family_id = id WHERE family_id IS NULL")
    op.alter_column("refresh_tokens", "family_id", nullable=False)
    op.create_foreign_key(
        "refresh_tokens_replaced_by_id_fkey",
        "refresh_tokens",
        "refresh_tokens",
        ["replaced_by_id"],
        ["id"],
    )
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])
    op.create_index("ix_email_verifications_user_id", "email_verifications", ["user_id"])
    op.create_index("ix_password_resets_user_id", "password_resets", ["user_id"])

    op.create_table(
        "two_factor_recovery_codes",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="two_factor_recovery_codes_user_id_fkey"
        ),
        sa.PrimaryKeyConstraint("id", name="two_factor_recovery_codes_pkey"),
        sa.UniqueConstraint("code_hash", name="two_factor_recovery_codes_code_hash_key"),
    )
    op.create_index(
        "ix_two_factor_recovery_codes_user_id", "two_factor_recovery_codes", ["user_id"]
    )

    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="rate_limits_pkey"),
    )
    op.create_index("ix_rate_limits_window_start", "rate_limits", ["window_start"])


def downgrade() -> None:
    op.drop_index("ix_rate_limits_window_start", table_name="rate_limits")
    op.drop_table("rate_limits")
    op.drop_index("ix_two_factor_recovery_codes_user_id", table_name="two_factor_recovery_codes")
    op.drop_table("two_factor_recovery_codes")
    op.drop_index("ix_password_resets_user_id", table_name="password_resets")
    op.drop_index("ix_email_verifications_user_id", table_name="email_verifications")
    op.drop_index("ix_refresh_tokens_family_id", table_name="refresh_tokens")
    op.drop_index("ix_refresh_tokens_user_id", table_name="refresh_tokens")
    op.drop_constraint("refresh_tokens_replaced_by_id_fkey", "refresh_tokens", type_="foreignkey")
    for column in ("user_agent", "ip_address", "replaced_by_id", "family_id"):
        op.drop_column("refresh_tokens", column)
    op.drop_index("uq_users_email_lower", table_name="users")
    op.drop_constraint(op.f("users_status_check"), "users", type_="check")
    op.drop_constraint(op.f("users_role_check"), "users", type_="check")
    op.drop_column("users", "totp_last_step")
