"""the due-work index covers the enrollment id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 04:00:00

`drip send` lists the ids of the due enrollments in the index's own order
(state, next_due_at, id): on PostgreSQL an index-only scan, on SQLite the same
index as before (it carries the rowid already). Either way the cost is what is
due, not the list's size.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index("ix_enrollments_due")
        batch_op.create_index("ix_enrollments_due", ["state", "next_due_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index("ix_enrollments_due")
        batch_op.create_index("ix_enrollments_due", ["state", "next_due_at"], unique=False)
