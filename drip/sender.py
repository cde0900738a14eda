"""`drip send`: due steps -> render -> claim -> SMTP -> record, exactly once, in order.

The guarantees and how they are kept:
- Once: a delivery row, unique on (subscriber, campaign, step), is inserted and
  committed as `claimed` *before* any SMTP talk. A second claim of the same step
  fails on that key, so no code path can send it twice.
- In order: schedule.plan_next only offers step n when step n-1 is recorded.
- In the window: checked against the clock at the moment of sending, in the
  subscriber's time zone; outside it, the step waits for the next opening.
- Never after unsubscribing: the due query joins on the subscriber's *current*
  status, and the suppression list is checked per message.
- In doubt: a crash between the server's 250 and the `sent` commit leaves a row
  `claimed`. Only one `drip send` runs at a time (locking.SendLock) and each has
  one message in flight, so at most one such row per crashed run exists. The next
  run marks it `in_doubt`, holds that subscriber's campaign, never resends it
  silently, and reports it until an operator resolves it (`drip deliveries`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import audit, enrollment
from .config import Campaign, Config, Step
from .message import Envelope, compose, make_message_id
from .models import (
    ACTIVE,
    BOUNCED,
    ENROLLED,
    Delivery,
    Enrollment,
    Subscriber,
    Suppression,
    Symptom,
)
from .render import Renderer, subscriber_context
from .schedule import (
    CLAIMED,
    DEFERRED,
    FAILED,
    IN_DOUBT,
    SENT,
    SKIPPED,
    Record,
    in_window,
    next_allowed,
)
from .subscribers import address_hash, suppress
from .tokens import Tokens, links
from .transport import PermanentFailure, TemporaryFailure, Transport, TransportUnavailable

MAX_ATTEMPTS = 6  # temporary failures: retried after 5m, 10m, 20m, 40m, 80m, then failed
FIRST_RETRY = timedelta(minutes=5)
MAX_CONSECUTIVE_REJECTIONS = 5  # sender/content 5xx in a row: stop, something is wrong


def retry_delay(attempts: int) -> timedelta:
    return FIRST_RETRY * (2 ** max(attempts - 1, 0))


@dataclass
class Summary:
    sent: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    in_doubt_new: int = 0
    in_doubt_total: int = 0
    replanned: int = 0
    stopped: str | None = None  # why the run stopped early, if it did
    planned: list[str] = field(default_factory=list)  # dry run: what would go

    def line(self, dry_run: bool = False) -> str:
        verb = "would send" if dry_run else "sent"
        text = (
            f"{self.sent} {verb}, {self.skipped} skipped, {self.deferred} deferred, "
            f"{self.failed} failed"
        )
        if self.bounced:
            text += f" ({self.bounced} bounced)"
        if self.in_doubt_total:
            text += (
                f"; {self.in_doubt_total} in doubt ({self.in_doubt_new} new), "
                "see `drip deliveries --in-doubt`"
            )
        if self.stopped:
            text += f"; stopped early: {self.stopped}"
        return text


class Sender:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        transport: Transport,
        tokens: Tokens,
        *,
        clock: Callable[[], datetime],
        renderer: Renderer | None = None,
        dry_run: bool = False,
        limit: int | None = None,
        batch_size: int = 200,
        actor: str = "drip send",
    ):
        self.config, self.engine, self.transport, self.tokens = config, engine, transport, tokens
        self.clock, self.dry_run, self.limit, self.batch_size = clock, dry_run, limit, batch_size
        self.renderer = renderer or Renderer(config.templates_dir)
        self.actor = actor
        self.run_id = secrets.token_hex(8)
        self.summary = Summary()
        self._rejections = 0

    # -- the run ---------------------------------------------------------------------

    def run(self, only_subscriber: int | None = None) -> Summary:
        """Send everything due now. `only_subscriber` narrows it (the web's urgent path)."""
        with Session(self.engine, expire_on_commit=False) as session:
            self._commit = session.flush if self.dry_run else session.commit
            try:
                now = self.clock()
                self.summary.in_doubt_new = sweep_in_doubt(session, self.config, now)
                self.summary.replanned = enrollment.replan_if_changed(session, self.config, now)
                self._commit()
                self._send_due(session, only_subscriber)
                self.summary.in_doubt_total = (
                    session.scalar(
                        select(func.count())
                        .select_from(Delivery)
                        .where(Delivery.status == IN_DOUBT)
                    )
                    or 0
                )
            finally:
                if self.dry_run:
                    session.rollback()
                self.transport.close()
        return self.summary

    def _send_due(self, session: Session, only_subscriber: int | None) -> None:
        last_id = 0
        while self.summary.stopped is None:
            now = self.clock()
            query = (
                select(Enrollment, Subscriber)
                .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
                .where(
                    Enrollment.state == ENROLLED,
                    Enrollment.next_due_at <= now,
                    Enrollment.id > last_id,
                    Subscriber.status == ACTIVE,
                    or_(Subscriber.paused_until.is_(None), Subscriber.paused_until <= now),
                )
                .order_by(Enrollment.id)
                .limit(self.batch_size)
            )
            if only_subscriber is not None:
                query = query.where(Subscriber.id == only_subscriber)
            batch = [(e, s) for e, s in session.execute(query)]
            if not batch:
                return
            last_id = batch[-1][0].id
            self._advance_batch(session, batch)
            session.expunge_all()  # keep memory flat however many are due

    def _advance_batch(self, session: Session, batch: list[tuple[Enrollment, Subscriber]]) -> None:
        sub_ids = {sub.id for _, sub in batch}
        records = enrollment.records_for(session, sub_ids)
        symptoms: dict[int, set[str]] = {sid: set() for sid in sub_ids}
        for sid, key in session.execute(
            select(Symptom.subscriber_id, Symptom.key).where(Symptom.subscriber_id.in_(sub_ids))
        ):
            symptoms[sid].add(key)
        hashes = {sub.id: address_hash(sub.email) for _, sub in batch}
        suppressed = set(
            session.scalars(
                select(Suppression.address_hash).where(
                    Suppression.address_hash.in_(hashes.values())
                )
            )
        )
        for enr, sub in batch:
            if self.summary.stopped is not None:
                return
            if sub.status != ACTIVE:  # bounced earlier in this very batch
                continue
            if hashes[sub.id] in suppressed:
                enr.state, enr.next_due_at = "left", None
                self._commit()
                continue
            self._advance(
                session, enr, sub, symptoms[sub.id], records[(enr.subscriber_id, enr.campaign_key)]
            )

    def _advance(
        self,
        session: Session,
        enr: Enrollment,
        sub: Subscriber,
        symptoms: set[str],
        records: dict[str, Record],
    ) -> None:
        """Move one enrollment forward: skips as needed, at most one email."""
        tz = ZoneInfo(sub.timezone)
        emailed = False
        while True:
            now = self.clock()
            plan = enrollment.refresh(session, self.config, enr, tz, records, now)
            if plan is None or plan.step is None or plan.due_at is None or plan.due_at > now:
                break
            campaign, step = self.config.campaign(enr.campaign_key), plan.step
            window = step.send_window or self.config.clinic.send_window
            if not in_window(now, window, tz):
                enr.next_due_at = next_allowed(now, window, tz)
                break
            if step.when is not None and not step.when.matches(symptoms):
                self._skip(session, sub, campaign, step, records, now)
                continue
            if emailed:  # one email per subscriber per campaign per run
                break
            if self.limit is not None and self.summary.sent >= self.limit:
                self.summary.stopped = f"--limit {self.limit} reached"
                break
            emailed = True
            self._deliver(session, sub, campaign, step, symptoms, records)
        self._commit()

    def _skip(
        self,
        session: Session,
        sub: Subscriber,
        campaign: Campaign,
        step: Step,
        records: dict[str, Record],
        now: datetime,
    ) -> None:
        reason = f"when rule does not match ({step.when.describe() if step.when else ''})"
        if step.key in records:  # a deferred retry whose rule no longer matches
            session.execute(
                update(Delivery)
                .where(*_row_of(sub, campaign, step), Delivery.status == DEFERRED)
                .values(status=SKIPPED, error=reason, updated_at=now)
            )
        else:
            enrollment.add_skip(session, sub.id, campaign.key, step.key, now, reason)
        records[step.key] = Record(SKIPPED, now)
        self.summary.skipped += 1

    # -- one message -----------------------------------------------------------------

    def _deliver(
        self,
        session: Session,
        sub: Subscriber,
        campaign: Campaign,
        step: Step,
        symptoms: set[str],
        records: dict[str, Record],
    ) -> None:
        now = self.clock()
        context = subscriber_context(
            self.config,
            first_name=sub.first_name,
            symptoms=symptoms,
            links=links(self.tokens, self.config.clinic.base_url, sub.public_id),
            campaign=campaign,
            step=step,
        )
        rendered = self.renderer.render(step, context)

        row = self._claim(session, sub, campaign, step, records, now)
        if row is None:
            return
        clinic = self.config.clinic
        list_unsub = f"<{context['unsubscribe_url']}>"
        if clinic.unsubscribe_mailto:
            list_unsub += f", <mailto:{clinic.unsubscribe_mailto}?subject=unsubscribe>"
        data = compose(
            clinic,
            sub.email,
            rendered,
            date=now,
            ref=row.ref,
            headers={
                "List-Unsubscribe": list_unsub,
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "X-Drip-Ref": row.ref,
            },
        )
        if self.dry_run:
            self.summary.planned.append(
                f"{now:%Y-%m-%d %H:%M}Z  {sub.email}  {campaign.key}/{step.key}  "
                f"{rendered.subject!r}"
            )
        try:
            self.transport.send(Envelope(clinic.from_email, sub.email, data))
        except TemporaryFailure as exc:
            self._after_temporary(row, exc, now)
        except PermanentFailure as exc:
            self._after_permanent(session, sub, row, exc, now)
        except TransportUnavailable as exc:
            # never reached the server: put the claim back, uncounted, and stop the run
            row.status, row.attempts, row.next_attempt_at = DEFERRED, row.attempts - 1, now
            row.error, row.updated_at = str(exc), now
            self.summary.stopped = str(exc)
        else:
            row.status, row.sent_at, row.updated_at = SENT, now, now
            row.message_id, row.error = make_message_id(row.ref, clinic.sender_domain), None
            self._rejections = 0
            self.summary.sent += 1
            audit.record(
                session,
                now,
                self.actor,
                "email.sent",
                sub.id,
                campaign=campaign.key,
                step=step.key,
                ref=row.ref,
            )
        # committed by _advance together with the enrollment's next step
        records[step.key] = Record(row.status, row.sent_at or now, row.next_attempt_at)

    def _claim(
        self,
        session: Session,
        sub: Subscriber,
        campaign: Campaign,
        step: Step,
        records: dict[str, Record],
        now: datetime,
    ) -> Delivery | None:
        """Insert (or take back a deferred) delivery row as `claimed`, and commit it."""
        if step.key in records:
            row = session.scalar(select(Delivery).where(*_row_of(sub, campaign, step)))
            taken = (
                session.execute(
                    update(Delivery)
                    .where(Delivery.id == row.id, Delivery.status == DEFERRED)
                    .values(
                        status=CLAIMED,
                        run_id=self.run_id,
                        attempts=Delivery.attempts + 1,
                        updated_at=now,
                    )
                ).rowcount
                if row is not None
                else 0
            )
            if not taken:
                return None
            self._commit()
            session.refresh(row)
            return row
        row = Delivery(
            subscriber_id=sub.id,
            campaign_key=campaign.key,
            step_key=step.key,
            status=CLAIMED,
            ref=secrets.token_hex(16),
            attempts=1,
            run_id=self.run_id,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        try:
            self._commit()
        except IntegrityError:  # another process claimed this very step first
            session.rollback()
            return None
        return row

    def _after_temporary(self, row: Delivery, exc: TemporaryFailure, now: datetime) -> None:
        row.error, row.updated_at = str(exc)[:2000], now
        if row.attempts >= MAX_ATTEMPTS:
            row.status, row.next_attempt_at = FAILED, None
            self.summary.failed += 1
        else:
            row.status, row.next_attempt_at = DEFERRED, now + retry_delay(row.attempts)
            self.summary.deferred += 1

    def _after_permanent(
        self, session: Session, sub: Subscriber, row: Delivery, exc: PermanentFailure, now: datetime
    ) -> None:
        row.status, row.error, row.updated_at, row.next_attempt_at = (
            FAILED,
            str(exc)[:2000],
            now,
            None,
        )
        self.summary.failed += 1
        if exc.recipient and not exc.is_policy:
            sub.status = BOUNCED
            suppress(session, sub.email, "hard-bounce", now)
            audit.record(
                session, now, self.actor, "subscriber.bounced", sub.id, error=str(exc)[:500]
            )
            self.summary.bounced += 1
            enrollment.sync_subscriber(session, self.config, sub, now)
            return
        self._rejections += 1
        if self._rejections >= MAX_CONSECUTIVE_REJECTIONS:
            self.summary.stopped = (
                f"{self._rejections} messages in a row refused by the "
                f"server (last: {exc}); check the sender settings"
            )


def _row_of(sub: Subscriber, campaign: Campaign, step: Step) -> tuple[Any, ...]:
    """The WHERE clauses naming one delivery row by its unique key."""
    return (
        Delivery.subscriber_id == sub.id,
        Delivery.campaign_key == campaign.key,
        Delivery.step_key == step.key,
    )


def sweep_in_doubt(session: Session, config: Config, now: datetime) -> int:
    """Rows still `claimed` when a run starts belong to a dead run (we hold the lock).

    Its message may or may not have been accepted by the server, so it is marked
    in_doubt and held, never resent silently. Returns how many were found.
    """
    rows = list(session.scalars(select(Delivery).where(Delivery.status == CLAIMED)))
    for row in rows:
        row.status, row.updated_at = IN_DOUBT, now
        row.error = "the run sending this was interrupted; the server may have accepted it"
        audit.record(
            session,
            now,
            "drip send",
            "delivery.in_doubt",
            row.subscriber_id,
            campaign=row.campaign_key,
            step=row.step_key,
            ref=row.ref,
        )
        session.execute(
            update(Enrollment)
            .where(
                and_(
                    Enrollment.subscriber_id == row.subscriber_id,
                    Enrollment.campaign_key == row.campaign_key,
                )
            )
            .values(state="held", next_due_at=None)
        )
    return len(rows)
