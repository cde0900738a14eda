"""When can a `drip send` next find something to do, if nobody writes to the database?

Asked at the end of a full run (drip/quiet.py remembers the answer). Every kind
of work a run does is listed with the moment it can start:
  - a series step: the enrollment's next_due_at (planning already moved it past
    the send window or min_gap), for an active patient who is not paused;
  - the retention purge: unsubscribed_at + keep_after_unsubscribe;
  - a newsletter: each time zone's send instant still ahead; once it has passed,
    when the window opens for those who did not get it yet, or min_gap after the
    last email of the first of them it holds; a deferred copy's retry (in the
    window, for a patient still reachable: one who left is never retried);
  - a pause that ends (a paused patient may become due for a newsletter).
None means "now, or cannot tell": a claim still held, a web email waiting in the
queue or being sent (its retries end within the half hour).
Conservative on purpose: a wrong None costs one full run, a wrong time would
delay an email.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, case, exists, func, or_, select, type_coerce
from sqlalchemy.orm import Session

from . import newsletters
from .config import Config, Newsletter
from .mailqueue import QUEUED, SENDING
from .models import (
    ACTIVE,
    COMPLAINED,
    ENROLLED,
    PENDING,
    UNSUBSCRIBED,
    Delivery,
    Enrollment,
    PendingChange,
    QueuedMail,
    Subscriber,
    Symptom,
    UTCDateTime,
)
from .rights import PENDING_TTL
from .schedule import CLAIMED, DEFERRED, IN_DOUBT, next_allowed

NEVER = datetime.max.replace(tzinfo=UTC)  # nothing falls due unless somebody writes


def next_work(session: Session, config: Config, now: datetime) -> datetime | None:
    """The earliest moment after `now` a run could have work; None: now or unknown."""
    in_progress = (
        exists().where(Delivery.status == CLAIMED),
        exists().where(Enrollment.leased_by.is_not(None)),
        # a web email waiting, even for a retry minutes away: a full run says so in a
        # line of its own ("1 waiting") that the quiet path cannot print
        exists().where(QueuedMail.status.in_((QUEUED, SENDING))),
    )
    if any(session.scalar(select(clause)) for clause in in_progress):
        return None
    moments = [
        next_step_due(session, now),  # a paused patient's wait for the pause's end, below
        # any pause, whoever holds it (one more full run at most): a range of the
        # partial index on paused_until, where a status filter would read every row
        session.scalar(
            select(func.min(Subscriber.paused_until)).where(Subscriber.paused_until > now)
        ),
    ]
    left = session.scalar(
        select(func.min(Subscriber.unsubscribed_at)).where(
            Subscriber.status.in_((UNSUBSCRIBED, COMPLAINED)),
            Subscriber.first_name.is_not(None)
            | Subscriber.id.in_(select(Symptom.subscriber_id))
            | Subscriber.id.in_(select(PendingChange.subscriber_id)),
        )
    )
    if left is not None:
        moments.append(left + config.privacy.keep_after_unsubscribe)
    # signups and re-signups never confirmed: purged a week after the latest of
    # signing up and being sent a confirmation (rights.pending_since; an email of
    # theirs still queued counts as in progress, above)
    signed_up = func.coalesce(Subscriber.consent_at, Subscriber.created_at)
    reminded = func.coalesce(Subscriber.last_confirmation_sent_at, Subscriber.created_at)
    latest = case((reminded > signed_up, reminded), else_=signed_up)
    for since in (
        session.scalar(select(func.min(latest)).where(Subscriber.status == PENDING)),
        session.scalar(select(func.min(PendingChange.created_at))),
    ):
        if since is not None:
            moments.append(since + PENDING_TTL)
    scheduled = newsletters.scheduled(session, config)
    zones: list[str] = []
    if scheduled:  # one read of the zones in use (a scan of the active subscribers)
        query = select(Subscriber.timezone).where(Subscriber.status == ACTIVE).distinct()
        zones = list(session.scalars(query))
    for newsletter in scheduled:
        moment = _newsletter(session, config, newsletter, zones, now)
        if moment is None:
            return None
        moments.append(moment)
    found = [m for m in moments if m is not None]
    if any(m <= now for m in found):
        return None
    return min(found, default=NEVER)


def next_step_due(session: Session, now: datetime) -> datetime | None:
    """When the next series step is due for an active patient who is not paused."""
    return session.scalar(
        select(func.min(Enrollment.next_due_at))
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(
            Enrollment.state == ENROLLED,
            Subscriber.status == ACTIVE,
            or_(Subscriber.paused_until.is_(None), Subscriber.paused_until <= now),
        )
    )


def in_doubt_count(session: Session) -> int:
    """Deliveries in doubt, for the summary line the quiet path prints."""
    query = select(func.count()).select_from(Delivery).where(Delivery.status == IN_DOUBT)
    return session.scalar(query) or 0


def _newsletter(
    session: Session, config: Config, newsletter: Newsletter, zones: list[str], now: datetime
) -> datetime | None:
    """When `newsletter` can next have a copy to send (NEVER, unless
    somebody writes); None: somebody is eligible now or its retry time has come."""
    assert newsletter.send_at is not None
    window = config.clinic.send_window
    # deferred copies: retried once their time has come, in the window, while their
    # patient is reachable (one who left never is: their copy waits for nothing;
    # a pause's end is a moment of its own)
    retries = session.execute(
        select(Subscriber.timezone, func.min(Delivery.next_attempt_at))
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Delivery.campaign_key == newsletter.campaign_key,
            Delivery.status == DEFERRED,
            *newsletters.reachable(now),
        )
        .group_by(Subscriber.timezone)
    )
    moments: list[datetime] = []
    for name, retry in retries:
        tz = newsletters.zone(name)
        if tz is not None and retry is not None:
            moments.append(next_allowed(max(retry, now), window, tz))
    for name in zones:
        tz = newsletters.zone(name)
        if tz is None:
            continue  # nobody in an unknown zone is ever sent a newsletter
        instant = newsletters.send_instant(newsletter.send_at, tz, window)
        if instant > now:
            moments.append(instant)
            continue
        # who would get it if the window were open and min_gap had passed
        eligible = newsletters.eligible(config, newsletter, name, instant, now, gap=False)
        if not session.scalar(select(eligible.exists())):
            continue
        free = now  # someone is waiting: for the window, or for min_gap to pass
        free_now = newsletters.eligible(config, newsletter, name, instant, now)
        if not session.scalar(select(free_now.exists())):
            last = session.scalar(eligible.with_only_columns(_earliest_last_mail(config)))
            if last is None:
                return None  # cannot tell
            free = max(now, last + config.clinic.min_gap)
        moments.append(next_allowed(free, window, tz))
    if any(m <= now for m in moments):
        return None
    return min(moments, default=NEVER)


def _earliest_last_mail(config: Config) -> ColumnElement[datetime]:
    """Over the subscribers selected, the earliest of their latest non-urgent emails:
    min_gap after it, the first of them may have the newsletter (as in
    newsletters.eligible, which holds anyone mailed within min_gap)."""
    latest = (
        select(func.max(func.coalesce(Delivery.sent_at, Delivery.updated_at)))
        .where(
            Delivery.subscriber_id == Subscriber.id,
            Delivery.campaign_key.not_in(sorted(config.urgent_keys())),
            Delivery.status.in_(newsletters.GOT_MAIL),
        )
        .correlate(Subscriber)
        .scalar_subquery()
    )
    return type_coerce(func.min(latest), UTCDateTime())
