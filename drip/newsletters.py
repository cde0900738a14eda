"""Newsletters: who gets one and when, where each stands, cancel, the patient's opt-out.

A newsletter goes once to each active subscriber whose symptoms match its
audience, at `send_at` in the subscriber's own time zone, moved into the clinic's
send window. It is news, not a series: someone who confirms after their send
instant does not get it. Sending goes through the same pipeline as the series
(drip/sender.py, drip/claims.py); a delivery is a row with campaign_key
"newsletter:KEY" and step_key KEY, so the unique key makes it once per person.

Who is eligible is one SQL query per (newsletter, time zone), so planning a
20,000-patient newsletter is a few keyset-paginated SELECTs, not 20,000 lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, true, update
from sqlalchemy.orm import Session

from . import audit
from .config import NEWSLETTER_PREFIX, Config, Newsletter, SendWindow
from .models import ACTIVE, Delivery, NewsletterState, Subscriber, Symptom
from .rules import Rule
from .schedule import CLAIMED, DEFERRED, IN_DOUBT, SENT, SKIPPED, in_window, next_allowed

# Statuses that mean "this patient got (or may have got) an email at that time".
GOT_MAIL = (SENT, CLAIMED, IN_DOUBT)
DRAFT, SCHEDULED, SENDING, DONE, CANCELLED = "draft", "scheduled", "sending", "sent", "cancelled"


def send_instant(send_at: datetime, tz: ZoneInfo, window: SendWindow) -> datetime:
    """When `send_at` (a wall-clock time) falls in `tz`, moved into the window (UTC)."""
    return next_allowed(send_at.replace(tzinfo=tz), window, tz)


def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def audience_clause(rule: Rule) -> ColumnElement[bool]:
    """The audience rule as SQL over subscriber_symptoms (EXISTS / NOT EXISTS)."""
    clauses: list[ColumnElement[bool]] = []
    has = Symptom.subscriber_id == Subscriber.id
    if rule.any:
        clauses.append(exists().where(has, Symptom.key.in_(sorted(rule.any))))
    for key in sorted(rule.all):
        clauses.append(exists().where(has, Symptom.key == key))
    if rule.none:
        clauses.append(~exists().where(has, Symptom.key.in_(sorted(rule.none))))
    return and_(true(), *clauses)


def reachable(now: datetime) -> list[ColumnElement[bool]]:
    """Active, not paused, not opted out of newsletters (suppression is checked by hash)."""
    return [
        Subscriber.status == ACTIVE,
        or_(Subscriber.paused_until.is_(None), Subscriber.paused_until <= now),
        Subscriber.newsletters_opt_out == False,  # noqa: E712
    ]


def eligible(
    config: Config,
    newsletter: Newsletter,
    timezone: str,
    instant: datetime,
    now: datetime,
    gap: bool = True,
) -> Select[Any]:
    """Subscribers in `timezone` who should get `newsletter` and have no row for it yet.

    With `gap`, also leaves out anyone who got another non-urgent email within
    min_gap: a later run picks them up once the gap has passed."""
    query = select(Subscriber.id).where(
        *reachable(now),
        Subscriber.timezone == timezone,
        Subscriber.confirmed_at.is_not(None),
        Subscriber.confirmed_at <= instant,
        audience_clause(newsletter.audience),
        ~exists().where(
            Delivery.subscriber_id == Subscriber.id,
            Delivery.campaign_key == newsletter.campaign_key,
            Delivery.step_key == newsletter.key,
        ),
    )
    if not gap:
        return query
    return query.where(
        ~exists().where(
            Delivery.subscriber_id == Subscriber.id,
            Delivery.campaign_key.not_in(sorted(config.urgent_keys())),
            Delivery.status.in_(GOT_MAIL),
            func.coalesce(Delivery.sent_at, Delivery.updated_at) > now - config.clinic.min_gap,
        )
    )


def scheduled(session: Session, config: Config) -> list[Newsletter]:
    """The newsletters with a send time that are not cancelled."""
    cancelled = cancelled_keys(session)
    return [n for n in config.newsletters if n.send_at is not None and n.key not in cancelled]


def due_zones(
    session: Session, config: Config, newsletter: Newsletter, now: datetime
) -> list[tuple[str, datetime]]:
    """(time zone, send instant) for each zone of active subscribers where the
    newsletter's send instant has come and the send window is open now."""
    assert newsletter.send_at is not None
    window = config.clinic.send_window
    found = []
    for name in session.scalars(
        select(Subscriber.timezone).where(Subscriber.status == ACTIVE).distinct()
    ):
        tz = zone(name)
        if tz is None:
            continue
        instant = send_instant(newsletter.send_at, tz, window)
        if instant <= now and in_window(now, window, tz):
            found.append((name, instant))
    return found


def cancelled_keys(session: Session) -> set[str]:
    return set(
        session.scalars(
            select(NewsletterState.key).where(NewsletterState.cancelled_at.is_not(None))
        )
    )


def stop_removed_and_cancelled(session: Session, config: Config, now: datetime) -> int:
    """Retries waiting for a newsletter that was cancelled or taken out of the file
    are recorded as skipped: no copy not yet claimed is ever sent. Returns how many."""
    cancelled = cancelled_keys(session)
    live = [n.campaign_key for n in config.newsletters if n.key not in cancelled]
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.campaign_key.like(NEWSLETTER_PREFIX + "%"),
            Delivery.campaign_key.not_in(live),
            Delivery.status == DEFERRED,
        )
        .values(
            status=SKIPPED,
            error="the newsletter was cancelled or removed before this copy went",
            updated_at=now,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def cancel(session: Session, key: str, now: datetime, actor: str = "cli") -> bool:
    """Mark `key` cancelled (claims check this at claim time). False if it already was."""
    row = session.get(NewsletterState, key)
    if row is None:
        row = NewsletterState(key=key, created_at=now)
        session.add(row)
    elif row.cancelled_at is not None:
        return False
    row.cancelled_at = now
    session.execute(
        update(Delivery)
        .where(Delivery.campaign_key == NEWSLETTER_PREFIX + key, Delivery.status == DEFERRED)
        .values(status=SKIPPED, error="the newsletter was cancelled", updated_at=now)
    )
    audit.record(session, now, actor, "newsletter.cancelled", None, newsletter=key)
    return True


def set_opt_out(session: Session, sub: Subscriber, opt_out: bool, now: datetime) -> bool:
    """The preferences page's "no newsletters" switch; the series are untouched."""
    if sub.newsletters_opt_out == opt_out:
        return False
    sub.newsletters_opt_out = opt_out
    action = "newsletters.left" if opt_out else "newsletters.joined"
    audit.record(session, now, "web", action, sub.id)
    return True


@dataclass(frozen=True)
class Standing:
    """One newsletter as `drip newsletter list` shows it."""

    newsletter: Newsletter
    state: str
    audience: int  # eligible now, by status, opt-out and audience rule
    sent: int
    remaining: int  # still to go: in the audience with no row yet, plus retries
    first_sent_at: datetime | None


def standings(session: Session, config: Config, now: datetime) -> list[Standing]:
    cancelled = cancelled_keys(session)
    zones = [
        z for z in session.scalars(select(Subscriber.timezone).distinct()) if zone(z) is not None
    ]
    found = []
    for n in config.newsletters:
        counts = dict(
            session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.campaign_key == n.campaign_key)
                .group_by(Delivery.status)
            ).all()
        )
        first = session.scalar(
            select(func.min(Delivery.sent_at)).where(
                Delivery.campaign_key == n.campaign_key, Delivery.status == SENT
            )
        )
        audience = session.scalar(
            select(func.count()).where(*reachable(now), audience_clause(n.audience))
        )
        remaining = counts.get(DEFERRED, 0) + counts.get(CLAIMED, 0)
        if n.send_at is not None and n.key not in cancelled:
            for name in zones:
                tz = zone(name)
                assert tz is not None
                instant = send_instant(n.send_at, tz, config.clinic.send_window)
                # the min_gap hold is a delay, not an exclusion: count them too
                query = eligible(config, n, name, instant, now, gap=False)
                remaining += session.scalar(select(func.count()).select_from(query.subquery())) or 0
        if n.key in cancelled:
            state = CANCELLED
        elif n.send_at is None:
            state = DRAFT
        elif not counts:
            state = SCHEDULED
        elif remaining:
            state = SENDING
        else:
            state = DONE
        found.append(Standing(n, state, audience or 0, counts.get(SENT, 0), remaining, first))
    return found
