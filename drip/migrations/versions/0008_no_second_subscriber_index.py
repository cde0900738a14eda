"""deliveries lose an index that repeated the start of another

Revision ID: 0008
Revises: 0007

Every delivery row is unique on (subscriber_id, campaign_key, step_key), and that
index answers whatever asks by subscriber_id alone (a patient's history, the
cascade when a patient is erased) on SQLite and PostgreSQL alike. The separate
index on subscriber_id only cost a write: one more B-tree page in every commit
of `drip send` (about 6% of what it wrote to SQLite's WAL).
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_subscriber_id", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_subscriber_id", "deliveries", ["subscriber_id"])
