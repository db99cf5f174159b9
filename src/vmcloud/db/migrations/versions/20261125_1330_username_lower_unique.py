"""usernames unique regardless of case, enforced by the database

Revision ID: 0007_username_lower_unique
Revises: 0006_seed_regions_images
Create Date: 2026-11-25 13:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_username_lower_unique"
down_revision: str | Sequence[str] | None = "0006_seed_regions_images"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_username_lower", table_name="users")
