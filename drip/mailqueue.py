"""The durable queue of transactional emails: confirmations, "already signed up"
notices and fresh preferences links.

The web request only renders the email and inserts a row; a worker thread in
`drip serve`/`drip run` (woken at once, and polling) and every `drip send`
deliver the rows, so a slow relay never holds up a page.

Exactly once, as in sender.py: a row is claimed (`sending`) and committed before
any SMTP talk; the claim is an UPDATE that only one process can win. A row still
`sending` after LEASE belongs to a process that died mid-send: the server may
or may not have accepted it, so it is marked `in_doubt` and never resent. The
person can ask again (sign up again, or ask for a new link).

Mail bombing: at most `per_mailbox` emails per mailbox (the address with any
+tag removed) per MAILBOX_WINDOW are queued at all; and at most `per_hour`
leave the whole site per hour. The rest wait in the queue for the next hour.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from . import audit
from .message import Envelope, new_ref
from .models import QueuedMail
from .subscribers import suppress
from .transport import (
    InDoubt,
    PermanentFailure,
    TemporaryFailure,
    Transport,
    TransportUnavailable,
)

QUEUED, SENDING, SENT, FAILED, IN_DOUBT = "queued", "sending", "sent", "failed", "in_doubt"
URGENT, NORMAL = 0, 1
LEASE = timedelta(minutes=15)  # far above one SMTP transaction's timeouts
MAILBOX_WINDOW = timedelta(hours=24)
MAX_ATTEMPTS = 6  # retried after 1, 2, 4, 8, 16 minutes, then failed
MAX_CONSECUTIVE_REJECTIONS = 5


class LimitsError(ValueError):
    """A mail limit in the environment is malformed."""


@dataclass(frozen=True)
class MailLimits:
    # emails queued per mailbox (plus-tags removed) per 24 hours
    per_mailbox: int = 3
    # emails from this queue leaving the whole site per hour; the rest wait
    per_hour: int = 200

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> MailLimits:
        env = dict(os.environ if env is None else env)
        return cls(
            per_mailbox=_count(env, "DRIP_CONFIRMATIONS_PER_MAILBOX", cls.per_mailbox),
            per_hour=_count(env, "DRIP_CONFIRMATIONS_PER_HOUR", cls.per_hour),
        )


def _count(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise LimitsError(f"{name} must be a whole number of emails, 1 or more, not {raw!r}")
    return int(raw)


def mailbox_of(address: str) -> str:
    """The mailbox an address reaches: `Victim+40@Example.org` -> `victim@example.org`."""
    local, _, domain = address.strip().lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def mailbox_hash(address: str) -> str:
    return hashlib.sha256(mailbox_of(address).encode()).hexdigest()


def mailbox_allows(session: Session, address: str, now: datetime, limits: MailLimits) -> bool:
    """Whether one more email may be queued for this mailbox now."""
    count = session.scalar(
        select(func.count())
        .select_from(QueuedMail)
        .where(
            QueuedMail.mailbox_hash == mailbox_hash(address),
            QueuedMail.created_at > now - MAILBOX_WINDOW,
        )
    )
    return (count or 0) < limits.per_mailbox


def enqueue(
    session: Session,
    *,
    kind: str,
    envelope: Envelope,
    now: datetime,
    subscriber_id: int | None,
    priority: int = NORMAL,
) -> QueuedMail:
    """Add one email to the caller's transaction (sent once the caller commits)."""
    row = QueuedMail(
        kind=kind,
        subscriber_id=subscriber_id,
        recipient=envelope.recipient,
        mailbox_hash=mailbox_hash(envelope.recipient),
        sender=envelope.sender,
        data=envelope.data,
        status=QUEUED,
        priority=priority,
        ref=new_ref(),
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(row)
    return row


@dataclass
class QueueCounts:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    in_doubt_new: int = 0
    waiting: int = 0  # still queued when the run ended (retry time, hourly cap)
    capped: bool = False
    stopped: str | None = None

    def line(self) -> str:
        text = f"{self.sent} sent, {self.deferred} deferred, {self.failed} failed"
        if self.waiting:
            text += f", {self.waiting} waiting" + (" (hourly cap)" if self.capped else "")
        if self.in_doubt_new:
            text += f"; {self.in_doubt_new} in doubt (interrupted mid-send, not resent)"
        if self.stopped:
            text += f"; stopped: {self.stopped}"
        return text


def deliver_queued(
    engine: Engine,
    transport: Transport,
    clock: Callable[[], datetime],
    *,
    limits: MailLimits | None = None,
    max_messages: int | None = None,
    actor: str = "drip send",
    render: Render | None = None,
) -> QueueCounts:
    """Send every queued email that is due, within the hourly cap. Never closes
    `transport` (the caller owns it).

    Rows queued without their bytes (an import's confirmations) are built by
    `render` just before they are claimed; without `render` they wait for a
    process that has one (`drip serve` / `drip run`)."""
    limits = limits or MailLimits()
    counts = QueueCounts()
    rejections = 0
    with Session(engine, expire_on_commit=False) as session:
        counts.in_doubt_new = sweep_interrupted(session, clock())
        session.commit()
        while max_messages is None or counts.sent < max_messages:
            now = clock()
            if _sent_last_hour(session, now) >= limits.per_hour:
                counts.capped = True
                break
            query = select(QueuedMail.id, QueuedMail.data.is_(None)).where(
                QueuedMail.status == QUEUED, QueuedMail.next_attempt_at <= now
            )
            if render is None:
                query = query.where(QueuedMail.data.is_not(None))
            found = session.execute(
                query.order_by(QueuedMail.priority, QueuedMail.id).limit(1)
            ).first()
            if found is None:
                break
            row_id, unbuilt = found
            if unbuilt and render is not None and not _build(session, row_id, render, now):
                continue
            claimed = session.execute(
                update(QueuedMail)
                .where(QueuedMail.id == row_id, QueuedMail.status == QUEUED)
                .values(status=SENDING, claimed_at=now, attempts=QueuedMail.attempts + 1)
            ).rowcount  # type: ignore[attr-defined]
            session.commit()  # the claim is durable before any SMTP talk
            if not claimed:  # another process took it first
                continue
            row = session.get(QueuedMail, row_id, populate_existing=True)
            assert row is not None and row.data is not None and row.recipient is not None
            try:
                transport.send(Envelope(row.sender or "", row.recipient, row.data))
            except TemporaryFailure as exc:
                row.error = str(exc)[:2000]
                if row.attempts >= MAX_ATTEMPTS:
                    row.status = FAILED
                    counts.failed += 1
                else:
                    row.status = QUEUED
                    row.next_attempt_at = now + timedelta(minutes=2 ** (row.attempts - 1))
                    counts.deferred += 1
            except PermanentFailure as exc:
                row.status, row.error = FAILED, str(exc)[:2000]
                counts.failed += 1
                if exc.bounce:  # the mailbox does not exist (replies.names_the_mailbox)
                    suppress(session, row.recipient, "hard-bounce", now)
                else:
                    rejections += 1
                    if rejections >= MAX_CONSECUTIVE_REJECTIONS:
                        counts.stopped = f"{rejections} emails in a row refused (last: {exc})"
            except InDoubt as exc:
                # the whole message went and the line dropped before the answer: the
                # server may have it, so it is never resent silently
                row.status, row.error = IN_DOUBT, str(exc)[:2000]
                counts.in_doubt_new += 1
                audit.record(session, now, actor, "email.in_doubt", row.subscriber_id, ref=row.ref)
            except TransportUnavailable as exc:
                # never reached the server: back in the queue, uncounted
                row.status, row.attempts, row.error = QUEUED, row.attempts - 1, str(exc)
                counts.stopped = str(exc)
            else:
                row.status, row.sent_at, row.error = SENT, now, None
                row.data = None  # the content is not needed once it went
                rejections = 0
                counts.sent += 1
                audit.record(session, now, actor, f"email.{row.kind}.sent", row.subscriber_id)
            session.commit()
            if counts.stopped:
                break
        counts.waiting = (
            session.scalar(
                select(func.count()).select_from(QueuedMail).where(QueuedMail.status == QUEUED)
            )
            or 0
        )
    return counts


Render = Callable[[Session, QueuedMail], Envelope | None]


def _build(session: Session, row_id: int, render: Render, now: datetime) -> bool:
    """Store the bytes of a row queued without them; False if it is no longer needed."""
    row = session.get(QueuedMail, row_id)
    if row is None or row.data is not None or row.status != QUEUED:
        return row is not None and row.status == QUEUED
    envelope = render(session, row)
    if envelope is None:  # e.g. the person confirmed, left or was erased meanwhile
        row.status, row.error = FAILED, "no longer needed"
        session.commit()
        return False
    row.sender, row.recipient, row.data = envelope.sender, envelope.recipient, envelope.data
    session.commit()
    return True


def _sent_last_hour(session: Session, now: datetime) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(QueuedMail)
            .where(
                QueuedMail.status.in_((SENT, SENDING, IN_DOUBT)),
                QueuedMail.claimed_at > now - timedelta(hours=1),
            )
        )
        or 0
    )


def sweep_interrupted(session: Session, now: datetime) -> int:
    """Rows claimed longer ago than LEASE: their sender died mid-send."""
    rows = list(
        session.scalars(
            select(QueuedMail).where(
                QueuedMail.status == SENDING, QueuedMail.claimed_at <= now - LEASE
            )
        )
    )
    for row in rows:
        row.status = IN_DOUBT
        row.error = "the process sending this was interrupted; the server may have accepted it"
        audit.record(session, now, "drip", "email.in_doubt", row.subscriber_id, ref=row.ref)
    return len(rows)


def waiting_for(session: Session, subscriber_id: int) -> int:
    """Emails for one subscriber not yet sent (tests, and `drip subscribers show`)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(QueuedMail)
            .where(QueuedMail.subscriber_id == subscriber_id, QueuedMail.status == QUEUED)
        )
        or 0
    )
