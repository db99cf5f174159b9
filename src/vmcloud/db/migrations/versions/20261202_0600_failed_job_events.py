"""jobs: a job that ends failed (or stops being failed) is announced to staff pages

A job ends ``failed`` in procrastinate's own SQL (``procrastinate_finish_job`` from the worker,
or ``recover_stalled`` for a job whose worker died), outside any session of ours, so the one
place that sees every such change is the table: this trigger sends the panel's notification
(``core.events``: channel ``vmcloud_events``, kind ``job``, no user, so staff streams only) in
the transaction that changes the job. A failed job retried or deleted by an operator is
announced too, so the overview's count goes down as well.

Revision ID: 0022_failed_job_events
Revises: 0021_canned_replies
Create Date: 2026-12-02 06:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022_failed_job_events"
down_revision: str | Sequence[str] | None = "0021_canned_replies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No ``UPDATE OF status`` and no ``WHEN`` on the column: either would make the trigger
    # depend on ``procrastinate_jobs.status``, and PostgreSQL then refuses the column type
    # change a procrastinate schema migration may make. The test is in the body instead, on
    # the status as text.
    op.execute(
        """
        CREATE FUNCTION vmcloud_announce_failed_job() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            was_failed boolean := OLD.status::text = 'failed';
            job_id bigint := OLD.id;
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF was_failed = (NEW.status::text = 'failed') THEN
                    RETURN NULL;
                END IF;
            ELSIF NOT was_failed THEN
                RETURN NULL;
            END IF;
            PERFORM pg_notify(
                'vmcloud_events',
                json_build_object('kind', 'job', 'user', NULL, 'id', job_id::text)::text
            );
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER vmcloud_job_failed_changed
            AFTER UPDATE OR DELETE ON procrastinate_jobs
            FOR EACH ROW
            EXECUTE FUNCTION vmcloud_announce_failed_job()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER vmcloud_job_failed_changed ON procrastinate_jobs")
    op.execute("DROP FUNCTION vmcloud_announce_failed_job()")
