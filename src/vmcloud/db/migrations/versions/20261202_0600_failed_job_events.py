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
    op.execute(
        """
        CREATE FUNCTION vmcloud_announce_failed_job() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            job procrastinate_jobs%ROWTYPE;
        BEGIN
            IF TG_OP = 'DELETE' THEN job := OLD; ELSE job := NEW; END IF;
            PERFORM pg_notify(
                'vmcloud_events',
                json_build_object('kind', 'job', 'user', NULL, 'id', job.id::text)::text
            );
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER vmcloud_job_failed_changed
            AFTER UPDATE OF status ON procrastinate_jobs
            FOR EACH ROW
            WHEN ((OLD.status = 'failed') IS DISTINCT FROM (NEW.status = 'failed'))
            EXECUTE FUNCTION vmcloud_announce_failed_job()
        """
    )
    op.execute(
        """
        CREATE TRIGGER vmcloud_job_failed_deleted
            AFTER DELETE ON procrastinate_jobs
            FOR EACH ROW WHEN (OLD.status = 'failed')
            EXECUTE FUNCTION vmcloud_announce_failed_job()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER vmcloud_job_failed_deleted ON procrastinate_jobs")
    op.execute("DROP TRIGGER vmcloud_job_failed_changed ON procrastinate_jobs")
    op.execute("DROP FUNCTION vmcloud_announce_failed_job()")
