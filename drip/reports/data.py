"""The report's one I/O step: read drip's own records into plain rows.

Events come from the audit log, which outlives purged and erased subscribers;
the subscriber rows fill in what the log does not say (e.g. records made before
the log existed). The two never count twice: see series.active_changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from ..feedback import ACTIONS, HARD
from ..models import ACTIVE, AuditEntry, Delivery, Subscriber
from ..rates import Rates, refused_at_rcpt, step_rates
from ..states import DeliveryStatus
from .series import (
    BOUNCE,
    COMPLAINT,
    CONFIRM,
    RESTORE,
    SIGNUP,
    UNSUBSCRIBE,
    DeliveryRow,
    Event,
    Weeks,
)

# audit actions -> event kinds (drip/subscribers.py, web/flows.py, feedback.py,
# sender.py, suppression.py write them)
ACTIONS_READ = (
    "subscriber.created",
    "signup.again",
    "subscriber.confirmed",
    "subscriber.unsubscribed",
    "subscriber.bounced",
    "subscriber.complained",
    "suppression.removed",
)


@dataclass
class Records:
    events: list[Event]  # every subscriber event up to the period's end, oldest first
    deliveries: list[DeliveryRow]  # rows that changed in the period
    history: list[DeliveryRow]  # every email sent to people who unsubscribed
    later_bounces: list[datetime]  # hard bounces reported after sending, in the period
    rates: dict[str, Rates]  # drip/rates.py, for the period
    statuses: dict[str, int]  # subscribers by status now


def event_of(action: str, detail: dict[str, object]) -> list[str]:
    """The event kinds one audit entry stands for."""
    if action == "subscriber.created":
        # added active (consent obtained elsewhere): a signup and a confirmation
        return [SIGNUP, CONFIRM] if detail.get("status") == ACTIVE else [SIGNUP]
    if action == "suppression.removed":
        # a mistaken bounce undone: the subscriber is active again
        return [RESTORE] if detail.get("status") == ACTIVE else []
    return {
        "signup.again": [SIGNUP],
        "subscriber.confirmed": [CONFIRM],
        "subscriber.unsubscribed": [UNSUBSCRIBE],
        "subscriber.bounced": [BOUNCE],
        "subscriber.complained": [COMPLAINT],
    }.get(action, [])


def load(session: Session, weeks: Weeks) -> Records:
    since, until = weeks.since, weeks.end
    events: list[Event] = []
    seen: set[tuple[int, str]] = set()  # (subscriber, kind) the log tells about
    for entry, at, action, who, detail in session.execute(
        select(
            AuditEntry.id,
            AuditEntry.at,
            AuditEntry.action,
            AuditEntry.subscriber_id,
            AuditEntry.detail,
        )
        .where(AuditEntry.action.in_(ACTIONS_READ), AuditEntry.at < until)
        .order_by(AuditEntry.at, AuditEntry.id)
    ):
        if who is None:
            if action != "subscriber.created":
                continue
            # a signup never confirmed, purged a week later without its id
            # (rights.purge_pending): still a signup that week, of nobody now
            who = -entry
        for kind in event_of(action, json.loads(detail or "{}")):
            events.append(Event(at, who, kind))
            seen.add((who, kind))
    statuses: dict[str, int] = {}
    for sub in session.execute(
        select(
            Subscriber.id,
            Subscriber.status,
            Subscriber.created_at,
            Subscriber.confirmed_at,
            Subscriber.unsubscribed_at,
        )
    ):
        statuses[sub.status] = statuses.get(sub.status, 0) + 1
        for kind, at in (
            (SIGNUP, sub.created_at),
            (CONFIRM, sub.confirmed_at),
            (UNSUBSCRIBE, sub.unsubscribed_at),
        ):
            if at is None or at >= until or (sub.id, kind) in seen:
                continue
            if kind == UNSUBSCRIBE and (sub.id, COMPLAINT) in seen:
                continue  # a complaint also sets unsubscribed_at: it is not an unsubscribe
            events.append(Event(at, sub.id, kind))
    events.sort(key=lambda e: e.at)

    sent = Delivery.sent_at.is_not(None)
    deliveries = [
        DeliveryRow(
            r.subscriber_id,
            r.campaign_key,
            r.step_key,
            r.status,
            r.sent_at or r.updated_at,  # when it was sent, else when it last changed
            bool(r.refused),
        )
        for r in session.execute(
            select(
                Delivery.subscriber_id,
                Delivery.campaign_key,
                Delivery.step_key,
                Delivery.status,
                Delivery.sent_at,
                Delivery.updated_at,
                refused_at_rcpt().label("refused"),
            ).where(
                or_(
                    and_(sent, Delivery.sent_at >= since, Delivery.sent_at < until),
                    and_(~sent, Delivery.updated_at >= since, Delivery.updated_at < until),
                )
            )
        )
    ]
    leavers = {e.subscriber_id for e in events if e.kind == UNSUBSCRIBE}
    history = [
        DeliveryRow(r.subscriber_id, r.campaign_key, r.step_key, DeliveryStatus.SENT, r.sent_at)
        for r in session.execute(
            select(
                Delivery.subscriber_id, Delivery.campaign_key, Delivery.step_key, Delivery.sent_at
            ).where(
                Delivery.status == DeliveryStatus.SENT,
                Delivery.sent_at < until,
                Delivery.subscriber_id.in_(
                    select(AuditEntry.subscriber_id).where(
                        AuditEntry.action == "subscriber.unsubscribed"
                    )
                )
                | Delivery.subscriber_id.in_(
                    select(Subscriber.id).where(Subscriber.unsubscribed_at.is_not(None))
                ),
            )
        )
        if r.subscriber_id in leavers
    ]
    later = list(
        session.scalars(
            select(AuditEntry.at).where(
                AuditEntry.action == ACTIONS[HARD], AuditEntry.at >= since, AuditEntry.at < until
            )
        )
    )
    return Records(events, deliveries, history, later, step_rates(session, since, until), statuses)
