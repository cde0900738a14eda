"""the pauses still running, by index

Revision ID: 0007
Revises: 0006

A run that finds nothing to do works out when something can next fall due
(drip/next_work.py), and the end of a pause is one such moment. Without an
index that reads every active subscriber (0.18 s at 1,000,000 on SQLite); a
partial index holds only the few rows with a pause set.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_subscribers_paused_until",
        "subscribers",
        ["paused_until"],
        sqlite_where=sa.text("paused_until IS NOT NULL"),
        postgresql_where=sa.text("paused_until IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_subscribers_paused_until", table_name="subscribers")
