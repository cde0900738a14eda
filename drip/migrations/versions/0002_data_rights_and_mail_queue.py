"""data rights and mail queue

mail_queue: transactional emails sent off the web request, exactly once.
pending_changes: a signup for an existing, not active address waits here
until the owner of the address confirms it.
subscribers.consent_basis: the consent basis recorded for imported people.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 02:43:43.138151
"""

import sqlalchemy as sa
from alembic import op

import drip.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("mailbox_hash", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", drip.models.UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", drip.models.UTCDateTime(), nullable=False),
        sa.Column("claimed_at", drip.models.UTCDateTime(), nullable=True),
        sa.Column("sent_at", drip.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_mail_queue_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_queue")),
        sa.UniqueConstraint("ref", name=op.f("uq_mail_queue_ref")),
    )
    with op.batch_alter_table("mail_queue", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mail_queue_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            "ix_mail_queue_due", ["status", "priority", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_mail_queue_mailbox_hash"), ["mailbox_hash"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_mail_queue_sent_at"), ["sent_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_mail_queue_subscriber_id"), ["subscriber_id"], unique=False
        )

    op.create_table(
        "pending_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("symptoms", sa.Text(), nullable=False),
        sa.Column("consent_text_version", sa.String(length=64), nullable=True),
        sa.Column("consent_text", sa.Text(), nullable=True),
        sa.Column("consent_ip", sa.String(length=64), nullable=True),
        sa.Column("consent_user_agent", sa.String(length=512), nullable=True),
        sa.Column("created_at", drip.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_pending_changes_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_changes")),
        sa.UniqueConstraint("nonce", name=op.f("uq_pending_changes_nonce")),
    )
    with op.batch_alter_table("pending_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pending_changes_subscriber_id"), ["subscriber_id"], unique=False
        )

    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent_basis", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("consent_basis")

    with op.batch_alter_table("pending_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_changes_subscriber_id"))

    op.drop_table("pending_changes")
    with op.batch_alter_table("mail_queue", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_queue_subscriber_id"))
        batch_op.drop_index(batch_op.f("ix_mail_queue_sent_at"))
        batch_op.drop_index(batch_op.f("ix_mail_queue_mailbox_hash"))
        batch_op.drop_index("ix_mail_queue_due")
        batch_op.drop_index(batch_op.f("ix_mail_queue_created_at"))

    op.drop_table("mail_queue")
