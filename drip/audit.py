"""The append-only audit log: who did what and when (sign-ups, consent,
confirmations, unsubscribes, bounces, suppressions, resolved deliveries, and each
time an operator read a subscriber's record)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditEntry, Subscriber

ERASED = "erased"  # the entry names a subscriber whose record was deleted since


def record(
    session: Session,
    at: datetime,
    actor: str,
    action: str,
    subscriber_id: int | None = None,
    **detail: Any,
) -> None:
    """Add an audit entry to the session's transaction (committed with the change)."""
    session.add(
        AuditEntry(
            at=at,
            actor=actor,
            action=action,
            subscriber_id=subscriber_id,
            detail=json.dumps(detail, default=str, sort_keys=True),
        )
    )


@dataclass(frozen=True)
class Shown:
    entry: AuditEntry
    who: str  # the subscriber's address, "erased", or "-" for entries about no one


def newest(session: Session, limit: int) -> list[Shown]:
    """The newest entries first, each with the address of the subscriber it is about."""
    rows = session.execute(
        select(AuditEntry, Subscriber.email)
        .outerjoin(Subscriber, Subscriber.id == AuditEntry.subscriber_id)
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    return [
        Shown(entry, email or (ERASED if entry.subscriber_id is not None else "-"))
        for entry, email in rows
    ]
