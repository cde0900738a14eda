"""One batch of due enrollments, by id: the planning reads (the enrollments with
their recipients, the recipients' delivery records, symptoms and suppressed
addresses) and the lease on those whose email goes now. Five statements a batch
of 200. A newsletter's batch of subscribers reads its symptoms and suppressed
addresses here too.

On SQLite they run straight on the driver, for two reasons measured on a run of
10,000 due:
- SQLite, which keeps no statistics here, read a batch's enrollments through the
  (state, next_due_at, id) index, so every batch walked every row still due: 3 ms
  a batch at 10,000 due, growing with the list (the whole send quadratic in it).
  The batch's own ids, by primary key, take 0.4 ms, whatever the list's size. A
  CROSS JOIN fixes the join order and a unary `+` keeps the filters off the
  indexes (SQLite's documented ways to steer its planner).
- SQLAlchemy's work around each of them (an IN list of 200 parameters compiled
  per batch, every datetime and state through its type's processor) cost about as
  much as the database's.
PostgreSQL plans with statistics and takes the rows it plans with FOR UPDATE SKIP
LOCKED (several senders share the work): it runs the same reads through SQLAlchemy.
tests/test_duebatch.py checks that both give the same rows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from . import enrollment
from .models import Enrollment, Subscriber, Suppression, Symptom, UTCDateTime
from .rawsql import Raw, Statement
from .schedule import Record
from .states import DeliveryStatus, EnrollmentState, SubscriberStatus

ACTIVE = SubscriberStatus.ACTIVE
ENROLLED = EnrollmentState.ACTIVE


class Recipient(NamedTuple):
    """The few subscriber columns planning needs (no ORM object, no symptoms loaded twice)."""

    id: int
    email: str
    public_id: str
    first_name: str | None
    timezone: str


RECIPIENT = (  # Recipient's fields, in order
    Subscriber.id,
    Subscriber.email,
    Subscriber.public_id,
    Subscriber.first_name,
    Subscriber.timezone,
)

Batch = list[tuple[enrollment.EnrollmentRow, Recipient]]

# -- PostgreSQL (and the reference the SQLite reads are tested against) ----------------

# built once: each batch only binds its ids (building an IN clause of 200 values
# cost more than running it)
_NOW = bindparam("now", type_=UTCDateTime())
DUE_BATCH = (
    select(*enrollment.ENROLLMENT_ROW, *RECIPIENT)
    .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
    .where(
        Enrollment.id.in_(bindparam("ids", expanding=True)),
        Enrollment.state == ENROLLED,
        Enrollment.next_due_at <= _NOW,
        Enrollment.leased_by.is_(None),  # not another sender's, right now
        Subscriber.status == ACTIVE,
        or_(Subscriber.paused_until.is_(None), Subscriber.paused_until <= _NOW),
    )
    .order_by(Enrollment.id)
    # PostgreSQL: senders planning at the same moment take disjoint rows
    .with_for_update(of=Enrollment, skip_locked=True)
)
_SYMPTOMS = select(Symptom.subscriber_id, Symptom.key).where(
    Symptom.subscriber_id.in_(bindparam("ids", expanding=True))
)
_SUPPRESSED = select(Suppression.address_hash).where(
    Suppression.address_hash.in_(bindparam("hashes", expanding=True))
)
_LEASE = (
    update(Enrollment)
    .where(Enrollment.id.in_(bindparam("ids", expanding=True)))
    .values(leased_by=bindparam("run"))
)

# -- SQLite, on the driver ---------------------------------------------------------

# the ids come as one JSON array (json_each): one statement text for any batch size
_RAW_DUE_BATCH = Statement(
    """SELECT e.id, e.subscriber_id, e.campaign_key, e.started_at, e.state,
              e.next_step_key, e.next_due_at,
              s.id, s.email, s.public_id, s.first_name, s.timezone
       FROM json_each(:ids) AS batch
       CROSS JOIN enrollments AS e ON e.id = batch.value
       CROSS JOIN subscribers AS s ON s.id = e.subscriber_id
       WHERE +e.state = :enrolled AND +e.next_due_at <= :now AND e.leased_by IS NULL
         AND +s.status = :active AND (s.paused_until IS NULL OR s.paused_until <= :now)
       ORDER BY e.id"""
)
_RAW_RECORDS = Statement(
    """SELECT d.subscriber_id, d.campaign_key, d.step_key, d.status, d.updated_at,
              d.sent_at, d.next_attempt_at
       FROM json_each(:ids) AS batch
       CROSS JOIN deliveries AS d ON d.subscriber_id = batch.value"""
)
_RAW_SYMPTOMS = Statement(
    """SELECT y.subscriber_id, y.key FROM json_each(:ids) AS batch
       CROSS JOIN subscriber_symptoms AS y ON y.subscriber_id = batch.value"""
)
_RAW_SUPPRESSED = Statement(
    """SELECT p.address_hash FROM json_each(:hashes) AS batch
       CROSS JOIN suppressions AS p ON p.address_hash = batch.value"""
)
_RAW_LEASE = Statement(
    "UPDATE enrollments SET leased_by = :run WHERE id IN (SELECT value FROM json_each(:ids))"
)
_STATUS = {status.value: status for status in DeliveryStatus}
_STATE = {state.value: state for state in EnrollmentState}


def _when(text: str) -> datetime:
    """A stored SQLite datetime (UTCDateTime's naive UTC text), UTC-aware again."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _maybe_when(text: str | None) -> datetime | None:
    return None if text is None else _when(text)


def _on_driver(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def due_batch(session: Session, ids: list[int], now: datetime) -> Batch:
    """The enrollments among `ids` still due at `now` (not leased, their subscriber
    active and not paused), with their recipients, in id order."""
    split = len(enrollment.ENROLLMENT_ROW)
    if not _on_driver(session):
        rows: Iterable[Any] = session.connection().execute(DUE_BATCH, {"ids": ids, "now": now})
        return [(enrollment.EnrollmentRow(*row[:split]), Recipient(*row[split:])) for row in rows]
    with Raw(session) as raw:
        found = raw.rows(
            _RAW_DUE_BATCH,
            {
                "ids": json.dumps(sorted(set(ids))),  # each once, as an IN list reads them
                "now": raw.when(now),
                "enrolled": ENROLLED.value,
                "active": ACTIVE.value,
            },
        )
    return [
        (
            enrollment.EnrollmentRow(
                eid, sid, campaign, _when(started), _STATE[state], step, _maybe_when(due)
            ),
            Recipient(*recipient),
        )
        for eid, sid, campaign, started, state, step, due, *recipient in found
    ]


def records(
    session: Session, subscriber_ids: Iterable[int]
) -> dict[tuple[int, str], dict[str, Record]]:
    """Delivery records per (subscriber, campaign) for these subscribers (as
    enrollment.records_for)."""
    if not _on_driver(session):
        return enrollment.records_for(session, subscriber_ids)
    found: dict[tuple[int, str], dict[str, Record]] = defaultdict(dict)
    ids = list(set(subscriber_ids))
    if not ids:
        return found
    session.flush()  # rows added in this session count too
    with Raw(session) as raw:
        rows = raw.rows(_RAW_RECORDS, {"ids": json.dumps(ids)})
    for sid, campaign, step, status, updated, sent, retry in rows:
        found[(sid, campaign)][step] = Record(
            _STATUS[status], _when(sent or updated), _maybe_when(retry)
        )
    return found


def symptoms(session: Session, subscriber_ids: Iterable[int]) -> dict[int, set[str]]:
    """Each subscriber's symptom keys (an empty set for none)."""
    ids = list(set(subscriber_ids))
    found: dict[int, set[str]] = {sid: set() for sid in ids}
    session.flush()  # rows added in this session count too
    if _on_driver(session):
        with Raw(session) as raw:
            rows: Iterable[Any] = raw.rows(_RAW_SYMPTOMS, {"ids": json.dumps(ids)})
    else:
        rows = session.connection().execute(_SYMPTOMS, {"ids": ids})
    for sid, key in rows:
        found[sid].add(key)
    return found


def suppressed(session: Session, hashes: Iterable[str]) -> set[str]:
    """Which of these address hashes are on the suppression list."""
    wanted = list(set(hashes))
    session.flush()  # a suppression added in this session (a bounce) counts too
    if _on_driver(session):
        with Raw(session) as raw:
            return {h for (h,) in raw.rows(_RAW_SUPPRESSED, {"hashes": json.dumps(wanted)})}
    return {h for (h,) in session.connection().execute(_SUPPRESSED, {"hashes": wanted})}


def lease(session: Session, ids: list[int], run_id: str) -> None:
    """Mark these enrollments as this run's (given back as each email is recorded)."""
    if not ids:
        return
    if _on_driver(session):
        with Raw(session) as raw:
            raw.one(_RAW_LEASE, {"ids": json.dumps(ids), "run": run_id})
    else:
        session.connection().execute(_LEASE, {"ids": ids, "run": run_id})
