"""audit entries of signups purged before this release lose their ids

Revision ID: 0008
Revises: 0007

Purging a signup never confirmed deleted the subscriber and kept their audit
entries under their id. SQLite gives the newest row's id to the next row once it
is deleted, so those entries could show up in the next person's record (`drip
subscribers export`). The purge now keeps them without the id; this does the same
for the entries of subscribers already gone. Erasure deletes its person's entries,
so only purged signups' entries are left like that. (An id already given to
someone new cannot be told apart here: their entries stay as they are.)
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE audit_log SET subscriber_id = NULL WHERE subscriber_id IS NOT NULL"
        " AND subscriber_id NOT IN (SELECT id FROM subscribers)"
    )


def downgrade() -> None:
    pass  # the ids are not kept anywhere; the entries themselves stay
