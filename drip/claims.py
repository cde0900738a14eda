"""The claim and record stages of `drip send`: a few statements per batch.

Claim: one statement per message, all committed together before any SMTP talk.
Each is conditional on the patient, *at claim time*, being active, not paused,
not suppressed and still in the series (for a newsletter: not opted out of
newsletters, and the newsletter not cancelled), so an unsubscribe or a
`drip newsletter cancel` committed before the claim always wins. A new claim
inserts the delivery row (unique on subscriber, campaign, step: a second claim
of the same step does nothing); a retry flips a `deferred` row back to `claimed`.

Record: one UPDATE per message and one per enrollment, executed as batches and
committed together after the server answered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
    cast,
    exists,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import (
    ACTIVE,
    ENROLLED,
    AuditEntry,
    Delivery,
    Enrollment,
    NewsletterState,
    Subscriber,
    Suppression,
)
from .models import UTCDateTime as _UTC
from .schedule import CLAIMED, DEFERRED

deliveries = Delivery.__table__
enrollments = Enrollment.__table__
subscribers = Subscriber.__table__
suppressions = Suppression.__table__
newsletters = NewsletterState.__table__


@dataclass(frozen=True)
class Claim:
    """One message to claim: the delivery row's key and who it is for."""

    subscriber_id: int
    campaign_key: str
    step_key: str
    ref: str
    address_hash: str
    retry: bool  # a deferred row already exists and is taken back
    newsletter: bool = False  # no enrollment needed; the opt-out and cancellation count


@dataclass(frozen=True)
class Result:
    """What became of one claimed message, as it is written to its row."""

    ref: str
    status: str
    error: str | None = None
    sent_at: datetime | None = None
    retry_at: datetime | None = None
    message_id: str | None = None
    give_back: bool = False  # never reached the server: the attempt is not counted


def _param(session: Session, name: str, type_: Any) -> ColumnElement[Any]:
    # PostgreSQL needs the type of a parameter in a SELECT list spelled out;
    # SQLite must not get CAST(... AS DATETIME), which turns a date into a number
    if session.get_bind().dialect.name == "postgresql":
        return cast(bindparam(name), type_)
    return bindparam(name, type_=type_)


def _eligible(session: Session, newsletter: bool = False) -> ColumnElement[bool]:
    """The patient may get this message right now (evaluated inside the claim).

    A series step needs the patient still in the series; a newsletter needs them
    not opted out of newsletters and the newsletter (step_key) not cancelled."""
    sid, now = bindparam("p_subscriber_id", type_=Integer), bindparam("p_now", type_=_UTC())
    person = [
        subscribers.c.id == sid,
        subscribers.c.status == ACTIVE,
        or_(subscribers.c.paused_until.is_(None), subscribers.c.paused_until <= now),
    ]
    if newsletter:
        person.append(subscribers.c.newsletters_opt_out == False)  # noqa: E712
        message = ~exists().where(
            newsletters.c.key == bindparam("p_step_key", type_=String),
            newsletters.c.cancelled_at.is_not(None),
        )
    else:
        message = exists().where(
            enrollments.c.subscriber_id == sid,
            enrollments.c.campaign_key == bindparam("p_campaign_key", type_=String),
            enrollments.c.state == ENROLLED,
        )
    return and_(
        exists().where(*person),
        ~exists().where(suppressions.c.address_hash == bindparam("p_address_hash", type_=String)),
        message,
    )


def claim(session: Session, claims: Sequence[Claim], run_id: str, now: datetime) -> set[str]:
    """Claim these messages (not committed here); the refs actually claimed."""
    if not claims:
        return set()
    params = [
        {
            "p_subscriber_id": c.subscriber_id,
            "p_campaign_key": c.campaign_key,
            "p_step_key": c.step_key,
            "p_ref": c.ref,
            "p_address_hash": c.address_hash,
            "p_run_id": run_id,
            "p_now": now,
        }
        for c in claims
    ]
    for newsletter in (False, True):
        pairs = [(p, c) for p, c in zip(params, claims, strict=True) if c.newsletter is newsletter]
        new = [p for p, c in pairs if not c.retry]
        retries = [p for p, c in pairs if c.retry]
        if new:
            session.execute(_insert_claims(session, newsletter), new)
        if retries:
            session.execute(
                update(deliveries)
                .where(
                    deliveries.c.ref == bindparam("p_ref", type_=String),
                    deliveries.c.status == DEFERRED,
                    _eligible(session, newsletter),
                )
                .values(
                    status=CLAIMED,
                    run_id=bindparam("p_run_id"),
                    attempts=deliveries.c.attempts + 1,
                    updated_at=bindparam("p_now"),
                ),
                retries,
            )
    refs = [c.ref for c in claims]
    return set(
        session.scalars(
            select(Delivery.ref).where(
                Delivery.ref.in_(refs), Delivery.status == CLAIMED, Delivery.run_id == run_id
            )
        )
    )


def _insert_claims(session: Session, newsletter: bool) -> Any:
    names = (
        "subscriber_id",
        "campaign_key",
        "step_key",
        "status",
        "ref",
        "attempts",
        "run_id",
        "created_at",
        "updated_at",
    )
    row = select(
        _param(session, "p_subscriber_id", Integer),
        _param(session, "p_campaign_key", String),
        _param(session, "p_step_key", String),
        literal_column(f"'{CLAIMED}'"),
        _param(session, "p_ref", String),
        literal_column("1"),
        _param(session, "p_run_id", String),
        _param(session, "p_now", _UTC()),
        _param(session, "p_now", _UTC()),
    ).where(_eligible(session, newsletter))
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(deliveries).from_select(names, row).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(deliveries).from_select(names, row).on_conflict_do_nothing()
    return insert(deliveries).from_select(names, row)  # pragma: no cover


def record(session: Session, results: Iterable[Result], run_id: str, now: datetime) -> None:
    """Write what the server said for each claimed message (not committed here)."""
    params = [
        {
            "b_ref": r.ref,
            "b_status": r.status,
            "b_error": r.error[:2000] if r.error else None,
            "b_sent_at": r.sent_at,
            "b_retry_at": r.retry_at,
            "b_message_id": r.message_id,
            "b_uncount": 1 if r.give_back else 0,
            "b_run": run_id,
            "b_now": now,
        }
        for r in results
    ]
    if not params:
        return
    session.execute(
        update(deliveries)
        .where(
            deliveries.c.ref == bindparam("b_ref"),
            deliveries.c.status == CLAIMED,
            deliveries.c.run_id == bindparam("b_run"),
        )
        .values(
            status=bindparam("b_status"),
            error=bindparam("b_error"),
            sent_at=bindparam("b_sent_at", type_=_UTC()),
            next_attempt_at=bindparam("b_retry_at", type_=_UTC()),
            message_id=bindparam("b_message_id"),
            attempts=deliveries.c.attempts - bindparam("b_uncount", type_=Integer),
            updated_at=bindparam("b_now", type_=_UTC()),
        ),
        params,
    )


def set_next(
    session: Session, plans: Iterable[tuple[int, str, str | None, datetime | None]]
) -> None:
    """Store (enrollment id, state, next step, next due) for many enrollments."""
    params = [
        {"b_id": eid, "b_state": state, "b_step": step, "b_due": due}
        for eid, state, step, due in plans
    ]
    if params:
        session.execute(
            update(enrollments)
            .where(enrollments.c.id == bindparam("b_id"))
            .values(
                state=bindparam("b_state"),
                next_step_key=bindparam("b_step"),
                next_due_at=bindparam("b_due", type_=_UTC()),
            ),
            params,
        )


def audit_many(session: Session, entries: Sequence[dict[str, Any]]) -> None:
    """Append many audit entries in one statement (same columns as audit.record)."""
    if entries:
        session.execute(insert(AuditEntry.__table__), list(entries))
