"""job queue: procrastinate's schema, for durable background jobs in PostgreSQL

The schema is the one shipped by the procrastinate version pinned in uv.lock. When the lock
moves to a procrastinate release with schema migrations, add a revision that applies them.

Revision ID: 0004_job_queue
Revises: 0003_accounts_security
Create Date: 2026-11-25 13:01:00+00:00
"""

from collections.abc import Sequence

from alembic import op
from procrastinate.schema import SchemaManager

revision: str = "0004_job_queue"
down_revision: str | Sequence[str] | None = "0003_accounts_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The schema is many statements; psycopg runs them as one script when given no parameters.
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute(SchemaManager.get_schema())


def downgrade() -> None:
    op.execute(
        """
        DO $$
        DECLARE obj record;
        BEGIN
            FOR obj IN SELECT tablename FROM pg_tables
                        WHERE schemaname = 'public' AND tablename LIKE 'procrastinate%'
            LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', obj.tablename);
            END LOOP;
            FOR obj IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                        WHERE p.pronamespace = 'public'::regnamespace
                          AND p.proname LIKE 'procrastinate%'
            LOOP
                EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', obj.signature);
            END LOOP;
            FOR obj IN SELECT typname FROM pg_type
                        WHERE typnamespace = 'public'::regnamespace
                          AND typname LIKE 'procrastinate%' AND typtype IN ('e', 'c')
            LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', obj.typname);
            END LOOP;
        END $$;
        """
    )
