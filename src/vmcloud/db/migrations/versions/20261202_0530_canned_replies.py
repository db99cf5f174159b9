"""support: the ``support.canned_replies`` setting (replies staff can start from)

A list of ``{title, body}``: the staff ticket page offers them in its reply form. Seeded with a
few general ones; admins edit the list on the settings page. Not public: customers never read
it.

Revision ID: 0021_canned_replies
Revises: 0020_node_health
Create Date: 2026-12-02 05:30:00+00:00
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_canned_replies"
down_revision: str | Sequence[str] | None = "0020_node_health"
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
KEY = "support.canned_replies"
REPLIES = [
    {
        "title": "Looking into it",
        "body": "Thank you for reaching out. We are looking into this now and will get back"
        " to you as soon as we know more.",
    },
    {
        "title": "Need more details",
        "body": "Could you tell us more: what you did, what you expected, what happened"
        " instead, and when it started? The name of the instance and any error message help"
        " us most.",
    },
    {
        "title": "Try a restart",
        "body": "Could you stop the instance and start it again from its page in the panel,"
        " then tell us whether the problem is still there?",
    },
    {
        "title": "Resolved",
        "body": "This should be fixed now. If it is not, reply here and the ticket opens again.",
    },
]


def upgrade() -> None:
    op.bulk_insert(
        settings,
        [
            {
                "key": KEY,
                "value": json.dumps(REPLIES, separators=(",", ":")),
                "type": "json",
                "category": "support",
                "is_public": False,
                "description": (
                    "Replies staff can start from on a ticket's page: a list of {title, body}."
                ),
            }
        ],
    )


def downgrade() -> None:
    op.execute(settings.delete().where(settings.c.key == KEY))
