"""The suppression list an operator manages: list, add, remove (drip suppress).

Entries are address hashes (they outlive an erased subscriber), so the list
shows the address where a subscriber still has it and the hash otherwise.
Removing an entry is the undo for a mistaken suppression: drip may mail the
address again. A subscriber drip had marked bounced goes back to the status
they had before the bounce; one who complained or unsubscribed stays so (they
withdrew consent and must sign up again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, enrollment
from .config import Config
from .models import ACTIVE, BOUNCED, PENDING, AuditEntry, Subscriber, Suppression
from .states import SubscriberStatus
from .subscribers import address_hash, find, normalize_email, suppress

MAX_REASON = 32


@dataclass(frozen=True)
class Entry:
    address: str  # the email, or "sha256:<hash>" when no subscriber has it any more
    reason: str
    created_at: datetime


def entries(session: Session) -> list[Entry]:
    rows = list(session.scalars(select(Suppression).order_by(Suppression.created_at)))
    wanted = {row.address_hash for row in rows}
    known = {}
    for address in session.scalars(select(Subscriber.email)):
        digest = address_hash(address)
        if digest in wanted:
            known[digest] = address
    return [
        Entry(known.get(r.address_hash, f"sha256:{r.address_hash}"), r.reason, r.created_at)
        for r in rows
    ]


def add(session: Session, email: str, reason: str, now: datetime, actor: str) -> bool:
    """Suppress `email` (raises InvalidSubscriber for a bad address); False if it already was."""
    address = normalize_email(email)
    reason = " ".join(reason.split())[:MAX_REASON] or "manual"
    if session.get(Suppression, address_hash(address)) is not None:
        return False
    suppress(session, address, reason, now)
    sub = find(session, address)
    audit.record(session, now, actor, "suppression.added", sub.id if sub else None, reason=reason)
    return True


@dataclass(frozen=True)
class Removed:
    reason: str
    subscriber_status: str | None  # after removal; None when no subscriber has the address
    restored: bool  # a bounced subscriber went back to their earlier status


def remove(
    session: Session, config: Config, email: str, now: datetime, actor: str
) -> Removed | None:
    """Take `email` off the list; None if it was not on it."""
    address = normalize_email(email)
    row = session.get(Suppression, address_hash(address))
    if row is None:
        return None
    session.delete(row)
    sub = find(session, address)
    restored = False
    if sub is not None and sub.status == BOUNCED:
        sub.status = _before_bounce(session, sub)
        sub.soft_bounces = 0
        restored = True
    if sub is not None:
        # the send loop took an active subscriber out of their campaigns while the
        # address was suppressed: put them back where their answers say
        enrollment.sync_subscriber(session, config, sub, now)
    audit.record(
        session,
        now,
        actor,
        "suppression.removed",
        sub.id if sub else None,
        reason=row.reason,
        status=sub.status if sub else None,
    )
    return Removed(row.reason, sub.status if sub else None, restored)


def _before_bounce(session: Session, sub: Subscriber) -> SubscriberStatus:
    last = session.scalar(
        select(AuditEntry)
        .where(AuditEntry.subscriber_id == sub.id, AuditEntry.action == "subscriber.bounced")
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    was = json.loads(last.detail).get("was") if last is not None else None
    # the Sender's own bounce entries do not say; it only bounces active subscribers
    return SubscriberStatus(was) if was in (ACTIVE, PENDING) else ACTIVE
