"""Patients' data rights: see everything held (GDPR Art. 15, 20; HIPAA access),
leave (Art. 7(3), 21), be erased (Art. 17), and retention limits (Art. 5(1)(e)).

Library functions working inside the caller's session; the CLI stays thin. Every
read of a person's data writes an audit entry in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from . import audit, enrollment
from .config import Config
from .mailqueue import QUEUED, SENDING
from .models import (
    ACTIVE,
    BOUNCED,
    COMPLAINED,
    PENDING,
    UNSUBSCRIBED,
    AuditEntry,
    Delivery,
    Enrollment,
    PendingChange,
    QueuedMail,
    Subscriber,
    Suppression,
    Symptom,
)
from .subscribers import address_hash, find
from .words import plural

# signups (and re-signups) never confirmed are purged this long after (the
# confirmation link's own age limit is the same)
PENDING_TTL = timedelta(days=7)

# a suppression kept after erasing someone who had asked for no more email: it
# blocks every email and import, but the person's own new signup, confirmed from
# their mailbox, lifts it (they can sign up again as new)
ERASED_OPT_OUT = "erased-opt-out"
LIFTABLE = (ERASED_OPT_OUT,)

PROFILE_FIELDS = (
    "email",
    "first_name",
    "timezone",
    "status",
    "source",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "paused_until",
)
CONSENT_FIELDS = (
    "consent_basis",
    "consent_text_version",
    "consent_at",
    "consent_ip",
    "consent_user_agent",
    "confirm_ip",
    "withdrawn_at",
)


class NotFound(LookupError):
    """No subscriber with that address."""


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _value(value: object) -> object:
    return _when(value) if isinstance(value, datetime) else value


def export_one(
    session: Session, config: Config, email: str, now: datetime, actor: str
) -> dict[str, Any]:
    """Everything drip holds about one person, as plain JSON-ready data (audited)."""
    sub = find(session, email)
    if sub is None:
        raise NotFound(email)
    labels = {**config.symptoms, **{k: f.label for k, f in config.red_flags.items()}}
    data: dict[str, Any] = {
        "profile": {name: _value(getattr(sub, name)) for name in PROFILE_FIELDS},
        "answers": [
            {"key": key, "label": labels.get(key, key)} for key in sorted(sub.symptom_keys)
        ],
        "consent": {name: _value(getattr(sub, name)) for name in CONSENT_FIELDS},
        "pending_changes": [
            {
                "created_at": _when(c.created_at),
                "first_name": c.first_name,
                "timezone": c.timezone,
                "answers": [k for k in c.symptoms.split(",") if k],
                "consent_ip": c.consent_ip,
                "consent_user_agent": c.consent_user_agent,
            }
            for c in session.scalars(
                select(PendingChange).where(PendingChange.subscriber_id == sub.id)
            )
        ],
        "enrollments": [
            {
                "campaign": e.campaign_key,
                "state": e.state,
                "started_at": _when(e.started_at),
                "next_step": e.next_step_key,
                "next_due_at": _when(e.next_due_at),
            }
            for e in session.scalars(
                select(Enrollment).where(Enrollment.subscriber_id == sub.id).order_by(Enrollment.id)
            )
        ],
        "deliveries": [
            {
                "campaign": d.campaign_key,
                "step": d.step_key,
                "status": d.status,
                "ref": d.ref,
                "attempts": d.attempts,
                "sent_at": _when(d.sent_at),
                "updated_at": _when(d.updated_at),
                "error": d.error,
            }
            for d in session.scalars(
                select(Delivery).where(Delivery.subscriber_id == sub.id).order_by(Delivery.id)
            )
        ],
        "transactional_emails": [
            {
                "kind": q.kind,
                "status": q.status,
                "created_at": _when(q.created_at),
                "sent_at": _when(q.sent_at),
            }
            for q in session.scalars(
                select(QueuedMail).where(QueuedMail.subscriber_id == sub.id).order_by(QueuedMail.id)
            )
        ],
        "audit": [
            {
                "at": _when(a.at),
                "actor": a.actor,
                "action": a.action,
                "detail": json.loads(a.detail or "{}"),
            }
            for a in session.scalars(
                select(AuditEntry).where(AuditEntry.subscriber_id == sub.id).order_by(AuditEntry.id)
            )
        ],
    }
    audit.record(session, now, actor, "subscriber.exported", sub.id)
    return data


EXPORT_COLUMNS = (
    "email",
    "first_name",
    "timezone",
    "symptoms",
    "status",
    "consent",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
)


def export_rows(session: Session, now: datetime, actor: str) -> Iterator[dict[str, str]]:
    """Every subscriber as one flat row (the columns `subscribers import` reads, plus
    status and dates), streamed in id order. One audit entry for the whole export."""
    total = session.scalar(select(func.count()).select_from(Subscriber)) or 0
    audit.record(session, now, actor, "subscribers.exported_all", None, count=total)
    session.commit()
    last = 0
    while True:
        batch = list(
            session.scalars(
                select(Subscriber).where(Subscriber.id > last).order_by(Subscriber.id).limit(1000)
            )
        )
        if not batch:
            return
        for sub in batch:
            yield {
                "email": sub.email,
                "first_name": sub.first_name or "",
                "timezone": sub.timezone,
                "symptoms": ";".join(sorted(sub.symptom_keys)),
                "status": sub.status,
                "consent": sub.consent_basis or sub.consent_text_version or "",
                "created_at": _when(sub.created_at) or "",
                "confirmed_at": _when(sub.confirmed_at) or "",
                "unsubscribed_at": _when(sub.unsubscribed_at) or "",
            }
        last = batch[-1].id
        session.expunge_all()


def unsubscribe(
    session: Session, config: Config, email: str, now: datetime, actor: str, how: str
) -> str:
    """'done' or 'already'. For requests by phone or letter; same effect as the link."""
    sub = find(session, email)
    if sub is None:
        raise NotFound(email)
    if sub.status == UNSUBSCRIBED or sub.withdrawn_at is not None:
        return "already"
    if sub.status in (ACTIVE, PENDING):
        sub.status, sub.unsubscribed_at = UNSUBSCRIBED, now
    sub.withdrawn_at = now
    session.execute(delete(PendingChange).where(PendingChange.subscriber_id == sub.id))
    audit.record(session, now, actor, "subscriber.unsubscribed", sub.id, how=how)
    enrollment.sync_subscriber(session, config, sub, now)
    return "done"


@dataclass(frozen=True)
class Erased:
    suppressed: bool
    audit_entries_removed: int


def erase(session: Session, email: str, now: datetime, actor: str) -> Erased:
    """Delete the person and everything about them (answers, consent, enrollments,
    deliveries, queued emails, audit entries). Kept: a hash of the address on the
    suppression list if they had asked for no more email (or bounced, or
    complained), and one audit entry saying an erasure happened, with no personal
    data and no subscriber id."""
    sub = find(session, email)
    if sub is None:
        raise NotFound(email)
    opted_out = sub.withdrawn_at is not None or sub.status in (UNSUBSCRIBED, BOUNCED, COMPLAINED)
    suppressed = False
    if opted_out:
        key = address_hash(sub.email)
        if session.get(Suppression, key) is None:
            session.add(Suppression(address_hash=key, reason=ERASED_OPT_OUT, created_at=now))
        suppressed = True
    removed = session.execute(delete(AuditEntry).where(AuditEntry.subscriber_id == sub.id)).rowcount  # type: ignore[attr-defined]
    for table in (QueuedMail, PendingChange, Delivery, Enrollment, Symptom):
        session.execute(delete(table).where(table.subscriber_id == sub.id))
    session.execute(delete(Subscriber).where(Subscriber.id == sub.id))
    session.expunge(sub)
    audit.record(
        session,
        now,
        actor,
        "subscriber.erased",
        None,
        suppressed=suppressed,
        entries_removed=removed,
    )
    return Erased(suppressed, removed)


def lift_on_new_consent(session: Session, email: str) -> None:
    """A person erased after opting out signed up again and confirmed: mail may flow."""
    session.execute(
        delete(Suppression).where(
            Suppression.address_hash == address_hash(email), Suppression.reason.in_(LIFTABLE)
        )
    )


def signup_allowed(session: Session, email: str) -> bool:
    """Whether a web signup may go ahead despite a suppression (see LIFTABLE)."""
    row = session.get(Suppression, address_hash(email))
    return row is None or row.reason in LIFTABLE


def purge_expired(session: Session, config: Config, now: datetime, actor: str) -> int:
    """Answers and names of people who unsubscribed (or marked an email as spam, which
    is an unsubscribe too) longer ago than [privacy] keep_after_unsubscribe.
    Idempotent; returns how many were purged."""
    cutoff = now - config.privacy.keep_after_unsubscribe
    ids = list(
        session.scalars(
            select(Subscriber.id).where(
                Subscriber.status.in_((UNSUBSCRIBED, COMPLAINED)),
                Subscriber.unsubscribed_at <= cutoff,
                (
                    Subscriber.first_name.is_not(None)
                    | Subscriber.id.in_(select(Symptom.subscriber_id))
                    | Subscriber.id.in_(select(PendingChange.subscriber_id))
                ),
            )
        )
    )
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        session.execute(delete(Symptom).where(Symptom.subscriber_id.in_(chunk)))
        session.execute(delete(PendingChange).where(PendingChange.subscriber_id.in_(chunk)))
        session.execute(
            update(Subscriber)
            .where(Subscriber.id.in_(chunk))
            .values(first_name=None)
            .execution_options(synchronize_session=False)
        )
        for sub_id in chunk:
            audit.record(session, now, actor, "subscriber.retention_purged", sub_id)
    return len(ids)


def pending_since(cutoff: datetime) -> tuple[ColumnElement[bool], ...]:
    """A pending signup with nothing done for it since `cutoff`: signed up, consented
    and last sent a confirmation before then, and no email of theirs queued, being
    sent, in doubt or sent since (the week counts from the latest confirmation, which
    for a big import may wait in the queue behind the hourly cap)."""
    return (
        Subscriber.status == PENDING,
        Subscriber.created_at <= cutoff,
        or_(Subscriber.consent_at.is_(None), Subscriber.consent_at <= cutoff),
        or_(
            Subscriber.last_confirmation_sent_at.is_(None),
            Subscriber.last_confirmation_sent_at <= cutoff,
        ),
        Subscriber.id.not_in(
            select(QueuedMail.subscriber_id).where(
                QueuedMail.subscriber_id.is_not(None),
                or_(
                    QueuedMail.status.in_((QUEUED, SENDING)),
                    func.coalesce(QueuedMail.sent_at, QueuedMail.claimed_at) > cutoff,
                ),
            )
        ),
    )


def purged_line(deleted: int, discarded: int) -> str:
    """What `purge_pending` did, as `drip send`, `purge-pending` and `drip run` say it."""
    return (
        f"purged {plural(deleted, 'unconfirmed signup')}; "
        f"{plural(discarded, 'expired re-signup')} discarded"
    )


def purge_pending(session: Session, now: datetime, ttl: timedelta = PENDING_TTL) -> tuple[int, int]:
    """Unconfirmed signups older than `ttl`: never-confirmed subscribers are deleted,
    and waiting re-signups (pending changes) are discarded, so the person stays as
    they were. Run by `drip send` and `drip run`. Returns (deleted, discarded).

    A deleted person's audit entries are kept without their id (as its purge entry
    is): SQLite may give the id to the next signup, whose record must not show them.
    """
    cutoff = now - ttl
    expired = session.execute(
        delete(PendingChange).where(PendingChange.created_at <= cutoff)
    ).rowcount  # type: ignore[attr-defined]
    stale = session.execute(
        select(Subscriber.id, Subscriber.confirmed_at).where(*pending_since(cutoff))
    ).all()
    deleted = 0
    for sub in stale:
        if sub.confirmed_at is None:
            # the whole condition again, in the statement: another sender (PostgreSQL)
            # may have purged them meanwhile, or they confirmed or signed up again
            gone = session.execute(
                delete(Subscriber).where(
                    Subscriber.id == sub.id,
                    Subscriber.confirmed_at.is_(None),
                    *pending_since(cutoff),
                )
            ).rowcount  # type: ignore[attr-defined]
            if gone:
                session.execute(
                    update(AuditEntry)
                    .where(AuditEntry.subscriber_id == sub.id)
                    .values(subscriber_id=None)
                )
                audit.record(session, now, "drip", "subscriber.purged", None, reason="unconfirmed")
                deleted += 1
        else:  # a re-signup stored before pending changes existed (schema 0001)
            reverted = session.execute(
                update(Subscriber)
                .where(Subscriber.id == sub.id, *pending_since(cutoff))
                .values(status=UNSUBSCRIBED)
            ).rowcount  # type: ignore[attr-defined]
            if reverted:
                audit.record(session, now, "drip", "signup.expired", sub.id)
                expired += 1
    return deleted, expired
