"""Delivery rows for the operator: the recent ones, and resolving an in-doubt one.

An in-doubt delivery is one a run was sending when it died: the relay may or may
not have taken it. Only a person can tell (the relay's log, the patient), so drip
holds that subscriber's campaign until someone says which it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, enrollment
from .campaigns import Config
from .models import Delivery, Subscriber
from .states import DeliveryStatus, Resolution


class NotInDoubt(LookupError):
    """No in-doubt delivery has that ref."""


@dataclass(frozen=True)
class Listed:
    delivery: Delivery
    email: str


def recent(session: Session, limit: int, in_doubt: bool = False) -> list[Listed]:
    """The newest deliveries first, with the subscriber's address."""
    query = (
        select(Delivery, Subscriber.email)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    if in_doubt:
        query = query.where(Delivery.status == DeliveryStatus.IN_DOUBT)
    return [Listed(d, email) for d, email in session.execute(query)]


def resolve(
    session: Session,
    config: Config,
    ref: str,
    resolution: Resolution,
    now: datetime,
    actor: str = "cli",
) -> Delivery:
    """Settle the in-doubt delivery `ref` and re-plan its subscriber (not committed)."""
    row = session.scalar(select(Delivery).where(Delivery.ref == ref))
    if row is None or row.status != DeliveryStatus.IN_DOUBT:
        raise NotInDoubt(f"no in-doubt delivery with ref {ref}")
    if resolution == Resolution.SENT:
        row.status, row.sent_at = DeliveryStatus.SENT, row.updated_at
    else:
        session.delete(row)
    audit.record(session, now, actor, f"delivery.resolved.{resolution}", row.subscriber_id, ref=ref)
    session.flush()
    sub = session.get(Subscriber, row.subscriber_id)
    if sub is not None:
        enrollment.sync_subscriber(session, config, sub, now)
    return row
