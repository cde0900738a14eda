"""Database tables. Portable SQL only: the same schema runs on SQLite and PostgreSQL.

Data flow: a Subscriber (with Symptom rows) is enrolled in campaigns (Enrollment);
each step sent, skipped or failed for them is one Delivery row, unique on
(subscriber, campaign, step), which is what makes a second send impossible.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .states import DeliveryStatus, EnrollmentState, SubscriberStatus

# The old names, still imported across drip: each is a member of its own enum now,
# so an enrollment's ENROLLED and a subscriber's ACTIVE no longer mix by accident.
PENDING = SubscriberStatus.PENDING
ACTIVE = SubscriberStatus.ACTIVE
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
BOUNCED = SubscriberStatus.BOUNCED
COMPLAINED = SubscriberStatus.COMPLAINED
ENROLLED = EnrollmentState.ACTIVE
FINISHED = EnrollmentState.FINISHED
LEFT = EnrollmentState.LEFT
HELD = EnrollmentState.HELD


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; drip stores UTC-aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class StateColumn(TypeDecorator[StrEnum]):
    """A String(16) column read back as `enum`; writing an unknown value is an error."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum: type[StrEnum], *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.enum = enum

    def process_bind_param(self, value: str | None, dialect: object) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: object) -> StrEnum | None:
        return None if value is None else self.enum(value)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # random, opaque, never derived from the address: goes into tokens and headers
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[SubscriberStatus] = mapped_column(StateColumn(SubscriberStatus), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(32), default="cli")
    # consent record (GDPR Art. 7): who, when, how, and which text they agreed to
    consent_text_version: Mapped[str | None] = mapped_column(String(64))
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    consent_ip: Mapped[str | None] = mapped_column(String(64))
    consent_user_agent: Mapped[str | None] = mapped_column(String(512))
    confirm_ip: Mapped[str | None] = mapped_column(String(64))
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_confirmation_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0)
    # "no newsletters, thanks" from the preferences page; the series go on
    newsletters_opt_out: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # for imported lists: on what basis the clinic may email them ("paper form 2025")
    consent_basis: Mapped[str | None] = mapped_column(String(500))

    symptoms: Mapped[list[Symptom]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def symptom_keys(self) -> set[str]:
        return {s.key for s in self.symptoms}


class Symptom(Base):
    __tablename__ = "subscriber_symptoms"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)

    subscriber: Mapped[Subscriber] = relationship(back_populates="symptoms")


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "campaign_key"),
        # the due-work query: the ids of active enrollments whose next step is due
        Index("ix_enrollments_due", "state", "next_due_at", "id"),
        # The leases held right now (a few rows) have a partial index too, so they are
        # given back and swept without a scan: migration 0006 makes it. It is not
        # declared here because its dialect options make SQLAlchemy import the
        # PostgreSQL dialect on every start (0.1 s of cron's idle run on SQLite).
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    campaign_key: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[EnrollmentState] = mapped_column(StateColumn(EnrollmentState))
    # a cache of schedule.plan_next(), refreshed after every delivery and whenever
    # the schedule in campaigns.toml changes (see Meta "schedule_fingerprint")
    next_step_key: Mapped[str | None] = mapped_column(String(64))
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the run (Sender.run_id) working on this enrollment's next email right now, so
    # that several senders sharing a PostgreSQL database never plan it twice
    leased_by: Mapped[str | None] = mapped_column(String(32))


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "campaign_key", "step_key"),
        Index("ix_deliveries_status_retry", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # an index of its own, though the unique key above starts with it: without
    # statistics SQLite would take the status index for "this patient's sent ones"
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    campaign_key: Mapped[str] = mapped_column(String(64))
    step_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[DeliveryStatus] = mapped_column(StateColumn(DeliveryStatus))
    # opaque reference carried in Message-ID and X-Drip-Ref: matches bounces to rows
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[str | None] = mapped_column(String(32))
    message_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class NewsletterState(Base):
    """What the database knows of a newsletter beyond campaigns.toml: its cancellation.

    Its deliveries are ordinary rows with campaign_key "newsletter:KEY", step_key KEY.
    """

    __tablename__ = "newsletters"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PendingChange(Base):
    """A signup for an address that already exists and is not active (pending or
    unsubscribed): its answers wait here, apart from the stored ones, until the
    owner of the address confirms with the link sent for this very change. A
    stranger can thus never overwrite someone's answers, name or consent record.
    """

    __tablename__ = "pending_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    # random; the confirmation link for this change carries it
    nonce: Mapped[str] = mapped_column(String(32), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    symptoms: Mapped[str] = mapped_column(Text, default="")  # keys joined by ","
    consent_text_version: Mapped[str | None] = mapped_column(String(64))
    consent_text: Mapped[str | None] = mapped_column(Text)
    consent_ip: Mapped[str | None] = mapped_column(String(64))
    consent_user_agent: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class QueuedMail(Base):
    """A transactional email (confirmation, "already signed up", fresh link) waiting
    to go. Written by the web request, sent by a worker off the request thread or
    by `drip send`; claimed and committed before any SMTP talk, like Delivery."""

    __tablename__ = "mail_queue"
    __table_args__ = (Index("ix_mail_queue_due", "status", "priority", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str | None] = mapped_column(String(320))
    # sha256 of the mailbox with any +tag removed: the per-mailbox limit counts these
    mailbox_hash: Mapped[str] = mapped_column(String(64), index=True)
    sender: Mapped[str | None] = mapped_column(String(320))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # dropped once sent
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=1)  # 0 goes first
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class Suppression(Base):
    """Addresses that must never be mailed, kept as a hash so it survives erasure."""

    __tablename__ = "suppressions"

    address_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Append-only: who did what, when. Never updated by drip; deleted only when the
    person it is about is erased (rights.erase), leaving a tombstone without them."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subscriber_id: Mapped[int | None] = mapped_column(Integer, index=True)
    detail: Mapped[str] = mapped_column(Text, default="{}")


class Meta(Base):
    """Small key/value facts about the database, e.g. the last schedule fingerprint."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
