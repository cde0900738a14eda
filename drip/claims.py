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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from .models import ACTIVE, ENROLLED
from .rawsql import Raw, Statement, in_list
from .schedule import CLAIMED, DEFERRED


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


# Plain SQL, the same on SQLite and PostgreSQL, run straight on the driver
# (rawsql.py): these run for every message.
_PERSON = f"""
    EXISTS (SELECT 1 FROM subscribers s WHERE s.id = :p_subscriber_id
            AND s.status = '{ACTIVE}'
            AND (s.paused_until IS NULL OR s.paused_until <= :p_now)
            {{}})
    AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.address_hash = :p_address_hash)"""
# a series step needs the patient still in the series
_ELIGIBLE = (
    _PERSON.format("")
    + f"""
    AND EXISTS (SELECT 1 FROM enrollments e WHERE e.subscriber_id = :p_subscriber_id
            AND e.campaign_key = :p_campaign_key AND e.state = '{ENROLLED}')"""
)
# a newsletter needs them not opted out of newsletters, and it not cancelled
_ELIGIBLE_NEWSLETTER = (
    _PERSON.format("AND s.newsletters_opt_out = false")
    + """
    AND NOT EXISTS (SELECT 1 FROM newsletters n WHERE n.key = :p_step_key
            AND n.cancelled_at IS NOT NULL)"""
)


def _claim_new(eligible: str) -> Statement:
    return Statement(
        f"""INSERT INTO deliveries (subscriber_id, campaign_key, step_key, status, ref,
                                    attempts, run_id, created_at, updated_at)
        SELECT CAST(:p_subscriber_id AS INTEGER), CAST(:p_campaign_key AS VARCHAR),
               CAST(:p_step_key AS VARCHAR), '{CLAIMED}', CAST(:p_ref AS VARCHAR), 1,
               CAST(:p_run_id AS VARCHAR), :p_now, :p_now
        WHERE {eligible}
        ON CONFLICT DO NOTHING"""
    )


def _claim_retry(eligible: str) -> Statement:
    return Statement(
        f"""UPDATE deliveries SET status = '{CLAIMED}', run_id = :p_run_id,
               attempts = attempts + 1, updated_at = :p_now
        WHERE ref = :p_ref AND status = '{DEFERRED}' AND {eligible}"""
    )


# (new claims, retries) for a series step and for a newsletter
_CLAIMS = {
    False: (_claim_new(_ELIGIBLE), _claim_retry(_ELIGIBLE)),
    True: (_claim_new(_ELIGIBLE_NEWSLETTER), _claim_retry(_ELIGIBLE_NEWSLETTER)),
}

_RECORD = Statement(
    f"""UPDATE deliveries SET status = :b_status, error = :b_error, sent_at = :b_sent_at,
           next_attempt_at = :b_retry_at, message_id = :b_message_id,
           attempts = attempts - :b_uncount, updated_at = :b_now
    WHERE ref = :b_ref AND status = '{CLAIMED}' AND run_id = :b_run"""
)

# only while this run still holds the lease: if the patient left the series
# meanwhile (the web side clears the lease), their decision stands
_SET_NEXT = Statement(
    """UPDATE enrollments SET state = :b_state, next_step_key = :b_step, next_due_at = :b_due,
           leased_by = NULL
    WHERE id = :b_id AND leased_by = :b_run"""
)

_RELEASE = Statement("UPDATE enrollments SET leased_by = NULL WHERE leased_by = :b_run")

_AUDIT = Statement(
    """INSERT INTO audit_log (at, actor, action, subscriber_id, detail)
    VALUES (:at, :actor, :action, :subscriber_id, :detail)"""
)

# the claimed rows by the unique index on ref alone (a status condition can mislead
# SQLite's planner); the IN list is built per batch size
_CLAIMED: dict[int, tuple[Statement, list[str]]] = {}


def _claimed(count: int) -> tuple[Statement, list[str]]:
    if count not in _CLAIMED:
        values, names = in_list("r", count)
        _CLAIMED[count] = (
            Statement(f"SELECT ref, status, run_id FROM deliveries WHERE ref IN {values}"),
            names,
        )
    return _CLAIMED[count]


def claim(session: Session, claims: Sequence[Claim], run_id: str, now: datetime) -> set[str]:
    """Claim these messages (not committed here); the refs actually claimed."""
    if not claims:
        return set()
    with Raw(session) as raw:
        return _claim(raw, claims, run_id, raw.when(now))


def _claim(raw: Raw, claims: Sequence[Claim], run_id: str, when: Any) -> set[str]:
    batches: dict[bool, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
        False: ([], []),
        True: ([], []),
    }
    for c in claims:
        batches[c.newsletter][c.retry].append(
            {
                "p_subscriber_id": c.subscriber_id,
                "p_campaign_key": c.campaign_key,
                "p_step_key": c.step_key,
                "p_ref": c.ref,
                "p_address_hash": c.address_hash,
                "p_run_id": run_id,
                "p_now": when,
            }
        )
    for newsletter, (new, retries) in batches.items():
        insert_new, take_back = _CLAIMS[newsletter]
        raw.many(insert_new, new)
        raw.many(take_back, retries)
    claimed: set[str] = set()
    for start in range(0, len(claims), 100):  # IN lists of a bounded size
        part = claims[start : start + 100]
        statement, names = _claimed(len(part))
        found = raw.rows(statement, dict(zip(names, (c.ref for c in part), strict=True)))
        claimed.update(ref for ref, status, run in found if status == CLAIMED and run == run_id)
    return claimed


def record(
    session: Session,
    results: Sequence[Result],
    plans: Sequence[tuple[int, str, str | None, datetime | None]],
    audit_rows: Sequence[dict[str, Any]],
    run_id: str,
    now: datetime,
) -> None:
    """The record stage, on one cursor (not committed here): what the server said for
    each claimed message; each enrollment's (id, state, next step, next due), with its
    lease given back; and the audit rows (same columns as audit.record)."""
    if not (results or plans or audit_rows):
        return
    with Raw(session) as raw:
        when = raw.when
        at = when(now)
        raw.many(
            _RECORD,
            [
                {
                    "b_ref": r.ref,
                    "b_status": r.status,
                    "b_error": r.error[:2000] if r.error else None,
                    "b_sent_at": when(r.sent_at),
                    "b_retry_at": when(r.retry_at),
                    "b_message_id": r.message_id,
                    "b_uncount": 1 if r.give_back else 0,
                    "b_run": run_id,
                    "b_now": at,
                }
                for r in results
            ],
        )
        raw.many(
            _SET_NEXT,
            [
                {"b_id": eid, "b_state": state, "b_step": step, "b_due": when(due), "b_run": run_id}
                for eid, state, step, due in plans
            ],
        )
        raw.many(_AUDIT, [{**row, "at": when(row["at"])} for row in audit_rows])


def release_leases(session: Session, run_id: str) -> None:
    """Give back every lease this run still holds (messages it did not send)."""
    with Raw(session) as raw:
        raw.one(_RELEASE, {"b_run": run_id})
