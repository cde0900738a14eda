"""Who is in which campaign, and the cached "next step due at" for each enrollment.

`sync_subscriber` applies the audience rules to one subscriber (on confirm, on a
symptom change, and for everyone when campaigns.toml's schedule changes).
`refresh` recomputes an enrollment's next step with schedule.plan_next and stores
it, so the send loop only has to ask the database for rows that are due.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from .campaigns import Config
from .message import new_ref
from .models import Delivery, Enrollment, Meta, Subscriber
from .schedule import Plan, Record, plan_next
from .states import DeliveryStatus, EnrollmentState, SubscriberStatus

FINGERPRINT_KEY = "schedule_fingerprint"
OPTED_OUT = EnrollmentState.OPTED_OUT  # the old name, imported by the web side


_RECORDS = select(  # built once: a batch binds only its ids
    Delivery.subscriber_id,
    Delivery.campaign_key,
    Delivery.step_key,
    Delivery.status,
    Delivery.updated_at,
    Delivery.sent_at,
    Delivery.next_attempt_at,
).where(Delivery.subscriber_id.in_(bindparam("ids", expanding=True)))


def records_for(
    session: Session, subscriber_ids: Iterable[int]
) -> dict[tuple[int, str], dict[str, Record]]:
    """Delivery records per (subscriber, campaign) for a batch of subscribers, in one query."""
    ids = list(set(subscriber_ids))
    found: dict[tuple[int, str], dict[str, Record]] = defaultdict(dict)
    if not ids:
        return found
    session.flush()  # read through the connection: rows added in this session count too
    rows = session.connection().execute(_RECORDS, {"ids": ids})
    for sid, ckey, skey, status, updated, sent, retry in rows:
        found[(sid, ckey)][skey] = Record(status, sent or updated, retry)
    return found


@dataclass(slots=True)
class EnrollmentRow:
    """An enrollment as plain values: what the send loop plans with, no ORM object per row.

    `refresh` and `apply_plan` change it like an Enrollment; `changed` says whether
    it must be written back (claims.record takes `stored()`).
    """

    id: int
    subscriber_id: int
    campaign_key: str
    started_at: datetime
    state: str
    next_step_key: str | None
    next_due_at: datetime | None
    leased_by: str | None = None  # read only when not another sender's (see refresh)
    was: tuple[str, str | None, datetime | None] = field(init=False)

    def __post_init__(self) -> None:
        self.was = (self.state, self.next_step_key, self.next_due_at)

    def stored(self) -> tuple[int, str, str | None, datetime | None]:
        return (self.id, self.state, self.next_step_key, self.next_due_at)

    def changed(self) -> bool:
        return (self.state, self.next_step_key, self.next_due_at) != self.was


ENROLLMENT_ROW = (  # EnrollmentRow's columns, in order
    Enrollment.id,
    Enrollment.subscriber_id,
    Enrollment.campaign_key,
    Enrollment.started_at,
    Enrollment.state,
    Enrollment.next_step_key,
    Enrollment.next_due_at,
)


def refresh(
    session: Session,
    config: Config,
    enrollment: Enrollment | EnrollmentRow,
    tz: ZoneInfo,
    records: dict[str, Record],
    now: datetime,
    run_id: str | None = None,
) -> Plan | None:
    """Store the enrollment's next step; record steps inserted behind it as skipped.

    An enrollment another sender has leased is left alone: that sender is sending
    its next email and plans the step after it when the server has answered.
    """
    if enrollment.state in (EnrollmentState.LEFT, EnrollmentState.OPTED_OUT):
        return None
    if enrollment.leased_by is not None and enrollment.leased_by != run_id:
        return None
    try:
        campaign = config.campaign(enrollment.campaign_key)
    except KeyError:  # campaign removed from campaigns.toml: nothing more is due
        enrollment.next_step_key = enrollment.next_due_at = None
        return None
    plan = plan_next(
        campaign,
        records,
        enrollment.started_at,
        tz,
        config.clinic.send_window,
        config.clinic.min_gap,
    )
    for key in plan.skip_inserted:
        add_skip(
            session,
            enrollment.subscriber_id,
            campaign.key,
            key,
            now,
            "step added before this subscriber's position",
        )
        records[key] = Record(DeliveryStatus.SKIPPED, now)
    apply_plan(enrollment, plan)
    return plan


def apply_plan(enrollment: Enrollment | EnrollmentRow, plan: Plan) -> None:
    if plan.blocked:
        enrollment.state = EnrollmentState.HELD
        enrollment.next_step_key, enrollment.next_due_at = None, None
    elif plan.finished:
        enrollment.state = EnrollmentState.FINISHED
        enrollment.next_step_key, enrollment.next_due_at = None, None
    else:
        assert plan.step is not None
        enrollment.state = EnrollmentState.ACTIVE
        enrollment.next_step_key, enrollment.next_due_at = plan.step.key, plan.due_at


def add_skip(
    session: Session,
    subscriber_id: int,
    campaign_key: str,
    step_key: str,
    now: datetime,
    reason: str,
) -> None:
    session.add(
        Delivery(
            subscriber_id=subscriber_id,
            campaign_key=campaign_key,
            step_key=step_key,
            status=DeliveryStatus.SKIPPED,
            ref=new_ref(),
            attempts=0,
            error=reason,
            created_at=now,
            updated_at=now,
        )
    )


def sync_subscriber(
    session: Session,
    config: Config,
    sub: Subscriber,
    now: datetime,
    preloaded: tuple[dict[int, dict[str, Enrollment]], dict[tuple[int, str], dict[str, Record]]]
    | None = None,
) -> None:
    """Enroll `sub` where the audience rules now match it; leave where they no longer do.

    Re-entering a campaign resumes where the subscriber left off: steps already
    sent are never sent again (the delivery rows say so). `preloaded` is what
    `preload` returned for a batch that includes `sub`.
    """
    enrollments, records = preloaded or preload(session, [sub.id])
    existing = enrollments.get(sub.id, {})
    symptoms = sub.symptom_keys
    tz = ZoneInfo(sub.timezone)
    for campaign in config.campaigns:
        wanted = sub.status == SubscriberStatus.ACTIVE and campaign.audience.matches(symptoms)
        enrollment = existing.get(campaign.key)
        if enrollment is not None and enrollment.state == EnrollmentState.OPTED_OUT:
            continue
        if not wanted:
            if enrollment is not None:
                enrollment.state, enrollment.next_step_key = EnrollmentState.LEFT, None
                enrollment.next_due_at = enrollment.leased_by = None  # a sender's plan is void
            continue
        if enrollment is None:
            enrollment = Enrollment(
                subscriber_id=sub.id,
                campaign_key=campaign.key,
                started_at=now,
                state=EnrollmentState.ACTIVE,
            )
            session.add(enrollment)
        elif enrollment.state == EnrollmentState.LEFT:
            enrollment.state = EnrollmentState.ACTIVE
        refresh(session, config, enrollment, tz, records[(sub.id, campaign.key)], now)


def preload(
    session: Session, subscriber_ids: list[int]
) -> tuple[dict[int, dict[str, Enrollment]], dict[tuple[int, str], dict[str, Record]]]:
    """Enrollments and delivery records of a batch of subscribers, in two queries."""
    enrollments: dict[int, dict[str, Enrollment]] = defaultdict(dict)
    for e in session.scalars(
        select(Enrollment).where(Enrollment.subscriber_id.in_(subscriber_ids))
    ):
        enrollments[e.subscriber_id][e.campaign_key] = e
    return enrollments, records_for(session, subscriber_ids)


def stored_fingerprint(session: Session) -> str | None:
    row = session.get(Meta, FINGERPRINT_KEY)
    return row.value if row else None


def replan_if_changed(session: Session, config: Config, now: datetime) -> int:
    """After campaigns.toml's schedule changed, re-sync every active subscriber.

    Set-based in SQL (drip/replan.py). Returns how many subscribers were
    re-planned (0 when nothing changed).
    """
    fingerprint = config.schedule_fingerprint()
    if stored_fingerprint(session) == fingerprint:
        return 0  # cron's usual case: drip/replan.py is not even loaded
    from .replan import can_replan_in_sql, replan_all

    if can_replan_in_sql(session, config):
        count = replan_all(session, config, now)
    else:
        count = replan_each(session, config, now)
    session.merge(Meta(key=FINGERPRINT_KEY, value=fingerprint))
    return count


def replan_each(session: Session, config: Config, now: datetime, batch: int = 500) -> int:
    """The same as replan.replan_all, one subscriber at a time (sync_subscriber).

    The reference the set-based re-plan is tested against, and the fallback for
    delays SQL cannot add exactly (fractions of a second, from code, not files).
    """
    count, last_id = 0, 0
    while True:
        subs = list(
            session.scalars(
                select(Subscriber)
                .where(Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.id > last_id)
                .order_by(Subscriber.id)
                .limit(batch)
            )
        )
        if not subs:
            break
        batch_data = preload(session, [sub.id for sub in subs])
        for sub in subs:
            sync_subscriber(session, config, sub, now, batch_data)
        last_id = subs[-1].id
        count += len(subs)
        session.flush()
    return count


def campaign_keys(session: Session, subscriber_id: int) -> list[str]:
    """The campaigns a subscriber is enrolled in, in any state."""
    return list(
        session.scalars(
            select(Enrollment.campaign_key)
            .where(Enrollment.subscriber_id == subscriber_id)
            .order_by(Enrollment.id)
        )
    )
