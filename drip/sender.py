"""`drip send`: plan -> render+compose -> claim -> send -> record, exactly once, in order.

The stages, each in its own place:
- plan (here, `_planning`): the due enrollments in batches; steps whose rule does
  not match are recorded as skipped, steps outside the send window wait; at most
  one email per subscriber per campaign per run. The next batch is planned in
  small steps while the relay has all the claimed messages it may (`_plan_ahead`),
  so the sending child is not left idle between batches.
- render + compose (`outgoing.build`): Jinja per subscriber, MIME bytes; for a
  big run, ahead of the claim in the sending children (`postman.ProcessPostman`).
- claim (`claims.claim`): a few messages at a time, committed before any SMTP talk.
- send (`postman.Postman`): N connections, each with its own thread; for a big
  run, from the sending children's event loops, which send only what was claimed.
- record (`claims.record`): results in batches, with each enrollment's next step.

The guarantees and how they are kept:
- Once: a delivery row, unique on (subscriber, campaign, step), is claimed and
  committed *before* any SMTP talk. A second claim of the same step does nothing.
- In order: schedule.plan_next only offers step n when step n-1 is recorded.
- In the window: checked in the subscriber's time zone when the step is planned,
  about a second before its message is handed to the relay.
- Never after unsubscribing: each claim is conditional on the patient being
  active, unpaused, unsuppressed and in the series *at claim time*, and a
  claimed message reaches the relay within about a second (at most
  4 x connections messages are claimed and not yet recorded).
- In doubt: a crash leaves at most those 4 x connections rows `claimed`. The next
  run marks them `in_doubt`, holds those subscribers' campaigns, never resends
  them silently, and reports them until an operator resolves them.
"""

from __future__ import annotations

import json
import secrets
import time
from array import array
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Engine,
    Integer,
    Select,
    and_,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from . import audit, claims, duebatch, enrollment, newsletters
from .claims import Claim, Result
from .config import Campaign, Config, ConfigError, Newsletter, Step, load_config
from .locking import RangeLocks, dead_runs, take_chores
from .message import BuildFailed, Envelope, make_message_id, new_ref
from .models import (
    ACTIVE,
    BOUNCED,
    ENROLLED,
    FINISHED,
    HELD,
    LEFT,
    Delivery,
    Enrollment,
    Meta,
    Subscriber,
    UTCDateTime,
)
from .pacing import Pacer
from .schedule import (
    CLAIMED,
    DEFERRED,
    FAILED,
    IN_DOUBT,
    SENT,
    SKIPPED,
    Plan,
    Record,
    in_window,
    next_allowed,
    plan_next,
)
from .subscribers import address_hash, suppress
from .summary import Summary
from .tokens import Tokens, links
from .transport import (
    InDoubt,
    PermanentFailure,
    TemporaryFailure,
    Transport,
    TransportUnavailable,
    connections_of,
    rate_of,
)

if TYPE_CHECKING:  # loaded when a message is built or sent, not by an idle run
    from .postman import Outcome, Postman, ProcessPostman
    from .render import Renderer

MAX_ATTEMPTS = 6  # temporary failures: retried after 5m, 10m, 20m, 40m, 80m, then failed
FIRST_RETRY = timedelta(minutes=5)
# The same refusal again and again is the relay's problem, not the patients': stop.
MAX_IDENTICAL_REFUSALS = 5
# "No such mailbox" for every address in a row is a misrouted relay, not a list.
MAX_BOUNCES_IN_A_ROW = 20
IN_FLIGHT_PER_CONNECTION = 4  # claimed and not yet recorded, per connection
BIG_RUN = 64  # emails due from which building and SMTP run in processes of their own
# PostgreSQL: a sender leases this many times its in-flight bound per planning batch
# (at least MIN_LEASE), so several senders split the due work finely and finish together
LEASE_PER_IN_FLIGHT = 4
MIN_LEASE = 32
PLAN_STEP = 8  # enrollments planned between two looks at the relay's answers
_DONE = object()


def retry_delay(attempts: int) -> timedelta:
    return FIRST_RETRY * (2 ** max(attempts - 1, 0))


@dataclass
class Job:
    """One planned message, in plain values (it outlives the planning batch's session).

    A newsletter's job has no enrollment (`enrollment_id` None): nothing follows it."""

    subscriber_id: int
    public_id: str
    email: str
    first_name: str | None
    tz: ZoneInfo
    campaign: Campaign
    step: Step
    symptoms: frozenset[str]
    ref: str
    attempts: int  # attempts before this one
    retry: bool
    enrollment_id: int | None = None
    started_at: datetime | None = None
    records: dict[str, Record] = field(default_factory=dict)
    envelope: Envelope | None = None
    broken: str | None = None  # why the message could not be built

    @property
    def newsletter(self) -> bool:
        return self.enrollment_id is None


class Sender:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        transport: Transport | None,
        tokens: Tokens,
        *,
        clock: Callable[[], datetime],
        renderer: Renderer | None = None,
        dry_run: bool = False,
        limit: int | None = None,
        batch_size: int = 200,
        actor: str = "drip send",
        progress: Callable[[int], None] | None = None,
        monotonic: Callable[[], float] | None = None,
        sign: Callable[[bytes], bytes] | None = None,
        separate_process: bool = False,
        run_id: str | None = None,
    ):
        self.config, self.engine, self.transport, self.tokens = config, engine, transport, tokens
        self.clock, self.dry_run, self.limit, self.batch_size = clock, dry_run, limit, batch_size
        self._ranges: RangeLocks | None = None  # PostgreSQL: newsletter ranges (on first use)
        self._renderer = renderer  # made on first use: an idle run renders nothing
        self.actor = actor
        self.progress = progress
        self.sign = sign  # DKIM (drip/dkim.py), applied to each message's final bytes
        self.separate_process = separate_process  # `drip send` itself, not the web process
        self.run_id = run_id or secrets.token_hex(8)  # SendLock's, so others see it alive
        self.summary = Summary()
        if transport is None and not dry_run:
            raise ValueError("a Sender needs a transport unless it is a dry run")
        self.max_in_flight = IN_FLIGHT_PER_CONNECTION * connections_of(transport)
        rate = rate_of(transport)
        self.pacer = Pacer(rate.per_second, monotonic or time.monotonic) if rate else None
        self._in_flight: dict[str, Job] = {}  # handed to the postman, no outcome yet
        self._planner: Iterator[list[Job] | None] = iter(())  # newsletters, then the series
        self._may_plan_ahead = False
        self._ahead: list[Job] | None = None  # its next batch, planned while sending
        self._results: list[Result] = []  # outcomes not yet written: still `claimed` rows
        self._next: list[tuple[int, str, str | None, datetime | None]] = []
        self._audit: list[dict[str, object]] = []
        self._bounced: set[int] = set()
        self._last_refusal: object = None
        self._refusals = 0
        self._bounces = 0
        self._planned_count = 0
        self._due = 0  # series emails due as the run starts, at most --limit (the postman)
        # subscriber id -> when this run planned them a non-urgent email (min_gap)
        self._recent: dict[int, datetime] = {}
        self._urgent = config.urgent_keys()
        self.postman: Postman[Job] | ProcessPostman[Job] | None = None  # on first use

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            from .render import Renderer  # Jinja and MJML, only once a message is built

            self._renderer = Renderer(self.config.templates_dir)
        return self._renderer

    # -- the run ---------------------------------------------------------------------

    def run(self, only_subscriber: int | None = None) -> Summary:
        """Send everything due now. `only_subscriber` narrows it (the web's urgent path)."""
        with Session(self.engine, expire_on_commit=False) as session:
            self.session = session
            self._commit = session.flush if self.dry_run else session.commit
            try:
                now = self.clock()
                chores = take_chores(session)  # one sender at a time does the run's chores
                if chores:
                    self.summary.in_doubt_new = sweep_in_doubt(session, now, self.run_id)
                if superseded(session, self.config):  # never re-plan back to an old version
                    self.summary.stopped = SUPERSEDED
                elif chores:
                    self.summary.replanned = enrollment.replan_if_changed(session, self.config, now)
                self._commit()
                self.postman = None  # started once there is mail to send
                try:
                    # newsletters first: when one falls together with a series step,
                    # the series step is the one that waits (min_gap)
                    # the next batch is planned while this one is at the relay; not on
                    # PostgreSQL, where senders share the work out by leases and ranges:
                    # a second lease held ahead is work the others may run out of
                    self._may_plan_ahead = session.get_bind().dialect.name != "postgresql"
                    if only_subscriber is None and self.summary.stopped is None:
                        self._planner = self._planned_newsletters(session)
                        while (batch := self._next_batch()) is not None:
                            self._dispatch(batch)
                    self._planner = self._planning(session, only_subscriber)
                    while (batch := self._next_batch()) is not None:
                        self._dispatch(batch)
                    while self._in_flight:
                        self._collect(wait=None)
                    self._write()
                    claims.release_leases(session, self.run_id)
                    self._commit()
                finally:
                    if self.postman is not None:
                        self.postman.stop()
                    if self._ranges is not None:
                        self._ranges.close()
                if self.summary.limit_reached and self.summary.stopped is None:
                    self.summary.stopped = f"--limit {self.limit} reached"
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
        return self.summary

    # -- plan ------------------------------------------------------------------------

    def _planned(self, session: Session, only_subscriber: int | None) -> Iterator[list[Job]]:
        """Batches of jobs: the enrollments due when the run starts, each visited once."""
        return (jobs for jobs in self._planning(session, only_subscriber) if jobs is not None)

    def _planning(
        self, session: Session, only_subscriber: int | None
    ) -> Iterator[list[Job] | None]:
        """Plan in small steps: None after each few enrollments, a batch's jobs once its
        plans are stored (committed). So the sender can plan between its sends.

        Finding them costs what is due, not the list's size: one range scan of the
        (state, next_due_at, id) index for their ids (8 bytes each), then each
        batch by primary key. A step that falls due during the run waits for the
        next run, so nobody gets two emails of one campaign in one run.
        """
        due = due_enrollments(session, self.clock(), only_subscriber)
        self._due = len(due) if self.limit is None else min(len(due), self.limit)
        schedule = self.config.schedule_fingerprint()
        size = self._lease_size(session)
        for start in range(0, len(due), size):
            if self.summary.stopped is not None or self.summary.limit_reached:
                return
            # another process took up an edit meanwhile (not merely: another sender is
            # re-planning to the very version this one holds, as PostgreSQL workers do)
            if _adopted(session) != schedule and superseded(session, self.config):
                self.summary.stopped = SUPERSEDED
                return
            if self._due >= BIG_RUN:  # its child starts up while the first batch is planned
                self._start_postman(self._due)
            now = self.clock()
            batch = duebatch.due_batch(session, due[start : start + size].tolist(), now)
            if not batch:
                continue
            jobs = yield from self._plan_batch(session, batch, now)
            # what planning changed (skips recorded, steps waiting for their window),
            # and the lease on the enrollments whose email goes now, in two statements
            planned = [job.enrollment_id for job in jobs if job.enrollment_id is not None]
            _store_plans(session, [enr for enr, _ in batch if enr.changed()])
            duebatch.lease(session, planned, self.run_id)  # given back as each is recorded
            self._commit()  # skips and waiting steps, before anything is claimed
            session.expunge_all()  # keep memory flat however many are due
            yield jobs

    def _lease_size(self, session: Session) -> int:
        """Enrollments planned (and leased) per batch.

        One sender per database (SQLite) plans big batches. Several senders on
        PostgreSQL each lease what they can send within a fraction of a second:
        with 200-row leases, 1,000 due among four senders left one sending 400
        alone at the end while the other three had finished.
        """
        if session.get_bind().dialect.name != "postgresql":
            return self.batch_size
        return min(self.batch_size, max(MIN_LEASE, LEASE_PER_IN_FLIGHT * self.max_in_flight))

    def _next_batch(self) -> list[Job] | None:
        """The next batch of jobs (planned ahead, or now); None: no more."""
        if self._ahead is not None:
            ready, self._ahead = self._ahead, None
            return ready
        return next((jobs for jobs in self._planner if jobs is not None), None)

    def _plan_ahead(self) -> bool:
        """One small step of planning the next batch while the relay works; False if
        there is none to take (a batch is ready already, PostgreSQL, or a rate limit:
        then planning ahead would only hold a message longer between its plan and its
        claim)."""
        if (
            self._ahead is not None
            or not self._may_plan_ahead
            or self.pacer is not None
            or self.summary.stopped
        ):
            return False
        step = next(self._planner, _DONE)
        if step is _DONE:
            self._planner = iter(())
            return False
        self._ahead = cast("list[Job] | None", step)
        return True

    def _plan_batch(
        self,
        session: Session,
        batch: duebatch.Batch,
        now: datetime,
    ) -> Generator[None, None, list[Job]]:
        sub_ids = {sub.id for _, sub in batch}
        records = duebatch.records(session, sub_ids)
        symptoms = duebatch.symptoms(session, sub_ids)
        hashes = {sub.id: address_hash(sub.email) for _, sub in batch}
        suppressed = duebatch.suppressed(session, hashes.values())
        last_mail = self._last_mail(records)
        jobs = []
        for i, (enr, sub) in enumerate(batch, 1):
            if i % PLAN_STEP == 0:
                yield  # the sender may send between steps
            if hashes[sub.id] in suppressed:
                enr.state, enr.next_due_at = LEFT, None
                continue
            job = self._plan_one(
                session,
                enr,
                sub,
                frozenset(symptoms[sub.id]),
                records[(enr.subscriber_id, enr.campaign_key)],
                last_mail.get(sub.id, {}),
                now,
            )
            if job is not None:
                jobs.append(job)
        return jobs

    def _plan_one(
        self,
        session: Session,
        enr: enrollment.EnrollmentRow,
        sub: duebatch.Recipient,
        symptoms: frozenset[str],
        records: dict[str, Record],
        last_mail: dict[str, datetime],
        now: datetime,
    ) -> Job | None:
        """The one message this enrollment sends now, if any, recording skips on the way.

        `last_mail`: campaign key -> this subscriber's latest non-urgent email in it."""
        tz = ZoneInfo(sub.timezone)
        while True:
            plan = enrollment.refresh(session, self.config, enr, tz, records, now, self.run_id)
            if plan is None or plan.step is None or plan.due_at is None or plan.due_at > now:
                return None
            campaign, step = self.config.campaign(enr.campaign_key), plan.step
            window = step.send_window or self.config.clinic.send_window
            if not in_window(now, window, tz):
                enr.next_due_at = next_allowed(now, window, tz)
                return None
            if step.when is not None and not step.when.matches(symptoms):
                self._skip(session, sub, campaign, step, records, now)
                continue
            if campaign.kind != "urgent":
                # another campaign's or a newsletter's email went within min_gap: wait
                others = [at for key, at in last_mail.items() if key != campaign.key]
                if sub.id in self._recent:
                    others.append(self._recent[sub.id])
                free_at = max(others, default=now) + self.config.clinic.min_gap
                if others and free_at > now:
                    enr.next_due_at = next_allowed(free_at, window, tz)
                    return None
            if self.limit is not None and self._planned_count >= self.limit:
                self.summary.limit_reached = True
                return None
            self._planned_count += 1
            if campaign.kind != "urgent":
                self._recent[sub.id] = now
            ref, attempts = new_ref(), 0
            retry = step.key in records  # a deferred row: take it back, same ref
            if retry:
                ref, attempts = session.execute(
                    select(Delivery.ref, Delivery.attempts).where(*_row_of(sub.id, campaign, step))
                ).one()
            return Job(
                enrollment_id=enr.id,
                subscriber_id=sub.id,
                public_id=sub.public_id,
                email=sub.email,
                first_name=sub.first_name,
                tz=tz,
                started_at=enr.started_at,
                campaign=campaign,
                step=step,
                symptoms=symptoms,
                records=records,
                ref=ref,
                attempts=attempts,
                retry=retry,
            )

    def _last_mail(
        self, records: dict[tuple[int, str], dict[str, Record]]
    ) -> dict[int, dict[str, datetime]]:
        """Per subscriber and campaign, the latest non-urgent email sent (or maybe sent)."""
        found: dict[int, dict[str, datetime]] = {}
        for (sid, key), steps in records.items():
            if key in self._urgent:
                continue
            times = [r.at for r in steps.values() if r.status in newsletters.GOT_MAIL]
            if times:
                found.setdefault(sid, {})[key] = max(times)
        return found

    # -- plan newsletters ------------------------------------------------------------

    def _planned_newsletters(self, session: Session) -> Iterator[list[Job] | None]:
        """Batches of newsletter jobs (None between steps, as `_planning`): retries
        first, then, per newsletter and time zone whose send instant has come, the
        eligible subscribers by keyset pagination (on PostgreSQL, by ranges of ids
        that several senders share out)."""
        now = self.clock()
        if session.get_bind().dialect.name == "postgresql" and self._ranges is None:
            self._ranges = RangeLocks(self.engine)
        width = self._lease_size(session)  # of a range of ids (PostgreSQL)
        stopped = newsletters.stop_removed_and_cancelled(session, self.config, now)
        self.summary.skipped += stopped
        self._commit()
        for newsletter in newsletters.scheduled(session, self.config):
            yield from self._newsletter_retries(session, newsletter, now)
            for zone_name, instant in newsletters.due_zones(session, self.config, newsletter, now):
                tz = ZoneInfo(zone_name)
                eligible = newsletters.eligible(self.config, newsletter, zone_name, instant, now)
                last_id = 0
                while self.summary.stopped is None and not self.summary.limit_reached:
                    query = eligible.where(Subscriber.id > last_id).order_by(Subscriber.id)
                    ids: list[int] = list(session.scalars(query.limit(self.batch_size)))
                    if not ids:
                        break
                    if len(ids) >= BIG_RUN:  # its child starts while this batch is planned
                        self._start_postman(len(ids))
                    if self._ranges is None:  # the only sender: everyone, in id order
                        last_id, taken = ids[-1], None
                    else:  # PostgreSQL: the range of ids[0], unless another sender has it
                        taken = ids[0] // width
                        last_id = (taken + 1) * width - 1
                        if not self._ranges.take(newsletter.key, taken):
                            continue
                        # as it is now that the range is ours (it may just have been sent)
                        ids = list(session.scalars(query.where(Subscriber.id <= last_id)))
                    try:
                        subs = session.scalars(select(Subscriber).where(Subscriber.id.in_(ids)))
                        jobs = yield from self._newsletter_jobs(
                            session, newsletter, list(subs), tz, now, {}
                        )
                        self._commit()  # skips, before anything is claimed
                        session.expunge_all()
                        # on PostgreSQL, claimed by the time this resumes (no planning
                        # ahead there): only then is its range given back
                        yield jobs
                    finally:
                        if taken is not None and self._ranges is not None:
                            self._ranges.give_back(newsletter.key, taken)

    def _newsletter_retries(
        self, session: Session, newsletter: Newsletter, now: datetime
    ) -> Iterator[list[Job] | None]:
        """Deferred copies of `newsletter` whose retry time has come."""
        rows = session.execute(
            select(Subscriber, Delivery.ref, Delivery.attempts)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(
                Delivery.campaign_key == newsletter.campaign_key,
                Delivery.status == DEFERRED,
                Delivery.next_attempt_at <= now,
                *newsletters.reachable(now),
            )
            .order_by(Delivery.id)
        ).all()
        window = self.config.clinic.send_window
        by_zone: dict[str, list[tuple[Subscriber, str, int]]] = {}
        for sub, ref, attempts in rows:
            by_zone.setdefault(sub.timezone, []).append((sub, ref, attempts))
        for name, found in by_zone.items():
            tz = newsletters.zone(name)
            if tz is None or not in_window(now, window, tz):
                continue
            for start in range(0, len(found), self.batch_size):
                chunk = found[start : start + self.batch_size]
                retries = {sub.id: (ref, attempts) for sub, ref, attempts in chunk}
                jobs = yield from self._newsletter_jobs(
                    session, newsletter, [sub for sub, _, _ in chunk], tz, now, retries
                )
                self._commit()
                session.expunge_all()
                yield jobs

    def _newsletter_jobs(
        self,
        session: Session,
        newsletter: Newsletter,
        subs: list[Subscriber],
        tz: ZoneInfo,
        now: datetime,
        retries: dict[int, tuple[str, int]],
    ) -> Generator[None, None, list[Job]]:
        """The jobs for this batch of subscribers; None after each few (see _planning)."""
        symptoms = duebatch.symptoms(session, [sub.id for sub in subs])
        hashes = {sub.id: address_hash(sub.email) for sub in subs}
        suppressed = duebatch.suppressed(session, hashes.values())
        gap = self.config.clinic.min_gap
        jobs = []
        for i, sub in enumerate(sorted(subs, key=lambda s: s.id), 1):
            if i % PLAN_STEP == 0:
                yield  # the sender may send between steps
            if hashes[sub.id] in suppressed:  # the claim would refuse it too
                reason = "the address is on the suppression list"
                if sub.id in retries:
                    session.execute(
                        update(Delivery)
                        .where(Delivery.ref == retries[sub.id][0], Delivery.status == DEFERRED)
                        .values(status=SKIPPED, error=reason, updated_at=now)
                    )
                else:
                    enrollment.add_skip(
                        session, sub.id, newsletter.campaign_key, newsletter.key, now, reason
                    )
                self.summary.skipped += 1
                continue
            if sub.id in self._recent and self._recent[sub.id] + gap > now:
                continue  # another newsletter went to them in this run: a later run
            if self.limit is not None and self._planned_count >= self.limit:
                self.summary.limit_reached = True
                break
            self._planned_count += 1
            self._recent[sub.id] = now
            ref, attempts = retries.get(sub.id, (new_ref(), 0))
            jobs.append(
                Job(
                    subscriber_id=sub.id,
                    public_id=sub.public_id,
                    email=sub.email,
                    first_name=sub.first_name,
                    tz=tz,
                    campaign=newsletter.campaign,
                    step=newsletter.step,
                    symptoms=frozenset(symptoms[sub.id]),
                    ref=ref,
                    attempts=attempts,
                    retry=sub.id in retries,
                )
            )
        return jobs

    def _skip(
        self,
        session: Session,
        sub: duebatch.Recipient,
        campaign: Campaign,
        step: Step,
        records: dict[str, Record],
        now: datetime,
    ) -> None:
        reason = f"when rule does not match ({step.when.describe() if step.when else ''})"
        if step.key in records:  # a deferred retry whose rule no longer matches
            session.execute(
                update(Delivery)
                .where(*_row_of(sub.id, campaign, step), Delivery.status == DEFERRED)
                .values(status=SKIPPED, error=reason, updated_at=now)
            )
        else:
            enrollment.add_skip(session, sub.id, campaign.key, step.key, now, reason)
        records[step.key] = Record(SKIPPED, now)
        self.summary.skipped += 1

    # -- render, claim, hand over ----------------------------------------------------

    def _start_postman(self, expected: int) -> None:
        """The send stage, once there is mail to send: threads here, or for a big run
        (`expected` emails, at least) a sending child process that builds and sends,
        so both cores work."""
        if self.limit is not None:  # --limit: never more than that, whatever is due
            expected = min(expected, self.limit)
        if self.postman is not None or self.transport is None or self.dry_run or expected <= 0:
            return
        from .postman import make_postman  # threads and processes: only with mail to send

        self.postman = make_postman(
            self.transport,
            connections_of(self.transport),
            separate_process=self.separate_process and expected >= BIG_RUN,
            build=self._envelope,
        )

    def _dispatch(self, jobs: list[Job]) -> None:
        # by what is due, not by this batch: a worker's first lease can be small
        self._start_postman(max(len(jobs), self._due) if jobs else 0)
        # big runs: the sending children build ahead while the relay works; else here
        builder = self._builder
        pending, ready = deque(jobs), deque[Job]()  # planned; built (or building), unclaimed
        batch = max(1, self.max_in_flight // 2)  # claims per commit, at least
        while (pending or ready) and self.summary.stopped is None:
            # outcomes not yet written go into the claim's own transaction, so only
            # the messages still at the relay count against the bound
            room = self.max_in_flight - len(self._in_flight)
            count = min(room, len(ready))
            # claim a good batch at once (one commit), or whatever is left at the end
            if count and count >= min(batch, len(ready) + len(pending)):
                if self.pacer is not None:
                    count = self.pacer.take(count)
                    if count == 0:  # the relay's rate: wait, recording what comes back
                        self._pause(self.pacer.wait())
                        continue
                self._send([ready.popleft() for _ in range(count)])
            elif pending and len(ready) < self.max_in_flight:
                # build the next messages while the relay works on the claimed ones
                if builder is not None:
                    ahead = [
                        pending.popleft() for _ in range(len(ready), self.max_in_flight) if pending
                    ]
                    builder.prepare([(job.ref, job, self._build_values(job)) for job in ahead])
                    ready.extend(ahead)
                else:
                    job = pending.popleft()
                    self._build(job)
                    ready.append(job)
                self._collect(wait=0)
            elif self._in_flight:
                # the relay has all it may: plan the next batch meanwhile, else wait
                self._collect(wait=0 if self._plan_ahead() else None)
            else:
                self._write()
                self._commit()
        if builder is not None and ready:  # planned, never claimed (the run stopped)
            builder.release([], [job.ref for job in ready])

    @property
    def _builder(self) -> ProcessPostman[Job] | None:
        """The postman that builds in its children, when it is one (big runs over SMTP)."""
        if self.postman is None:
            return None
        from .postman import ProcessPostman  # loaded already: there is mail to send

        return self.postman if isinstance(self.postman, ProcessPostman) else None

    def _build(self, job: Job) -> None:
        """Render and compose one message; a failure is kept with the job, not raised."""
        try:
            job.envelope = self._envelope(self._build_values(job))
        except Exception as exc:  # one broken message must not stop the others
            job.broken = str(exc) or type(exc).__name__

    def _build_values(self, job: Job) -> tuple[Any, ...]:
        """What building `job`'s message takes, in plain values (cheap to pass to the
        sending child): what `_envelope` unpacks. The signed links are made here: the
        child, which builds and sends, is the busier process of a big run."""
        return (
            job.email,
            job.public_id,
            job.first_name,
            job.symptoms,
            job.campaign.key,
            job.step.key,
            job.ref,
            links(self.tokens, self.config.clinic.base_url, job.public_id),
        )

    def _envelope(self, values: tuple[Any, ...]) -> Envelope:
        """The message from `_build_values` (raises); here, or in a sending child."""
        from .outgoing import build  # Jinja, MJML and MIME: not loaded by an idle run

        email, public_id, first_name, symptoms, campaign_key, step_key, ref, urls = values
        campaign, step = self._steps[campaign_key, step_key]
        return build(
            self.config,
            self.renderer,
            self.tokens,
            email=email,
            public_id=public_id,
            first_name=first_name,
            symptoms=symptoms,
            campaign=campaign,
            step=step,
            ref=ref,
            date=self.clock(),
            sign=self.sign,
            links=urls,
        ).envelope

    @cached_property
    def _steps(self) -> dict[tuple[str, str], tuple[Campaign, Step]]:
        """Every (campaign, step) this config can send, by key: what a job names."""
        found = {(c.key, s.key): (c, s) for c in self.config.campaigns for s in c.steps}
        found.update(
            {(n.campaign_key, n.key): (n.campaign, n.step) for n in self.config.newsletters}
        )
        return found

    def _send(self, chunk: list[Job]) -> None:
        """Claim built messages (one commit, with the outcomes so far) and hand them over."""
        now = self.clock()
        if self.dry_run:
            for job in chunk:
                self.summary.planned.append(
                    f"{now:%Y-%m-%d %H:%M}Z  {job.email}  {job.campaign.key}/{job.step.key}  "
                    + (f"cannot be built: {job.broken}" if job.broken else "")
                )
                self.summary.sent += job.broken is None
            return
        self._write()  # the outcomes so far go in the same transaction as the claim
        claimed = claims.claim(
            self.session,
            [
                Claim(
                    j.subscriber_id,
                    j.campaign.key,
                    j.step.key,
                    j.ref,
                    address_hash(j.email),
                    j.retry,
                    j.newsletter,
                )
                for j in chunk
            ],
            self.run_id,
            now,
        )
        self._commit()  # the claim is durable before any SMTP talk
        for job in chunk:
            if job.ref in claimed and job.broken is not None:
                self._unbuildable(job, job.broken, now)
        assert self.postman is not None
        handed = [job for job in chunk if job.ref in claimed and job.broken is None]
        for job in handed:
            self._in_flight[job.ref] = job
        builder = self._builder
        if builder is not None:  # built ahead: send the claimed, forget the others
            builder.release(
                [job.ref for job in handed], [job.ref for job in chunk if job.ref not in claimed]
            )
        else:  # the whole batch at once
            cast("Postman[Job]", self.postman).hand(
                [(job, job.envelope) for job in handed if job.envelope]
            )

    def _pause(self, seconds: float) -> None:
        if self._in_flight:
            self._collect(wait=max(seconds, 0.001))
        else:
            time.sleep(seconds)

    # -- record ----------------------------------------------------------------------

    def _collect(self, wait: float | None) -> None:
        if self.postman is None:  # a dry run sends nothing
            return
        outcomes = self.postman.outcomes(wait)
        for outcome in outcomes:
            self._in_flight.pop(outcome.item.ref, None)
            self._outcome(outcome)
        if self.postman.failed is not None and self.summary.stopped is None:
            self.summary.stopped = self.postman.failed  # a child process died: stop here
        if outcomes and self.progress is not None:
            self.progress(len(outcomes))

    def _outcome(self, outcome: Outcome[Job]) -> None:
        job, error, now = outcome.item, outcome.error, self.clock()
        attempts = job.attempts + 1
        if error is None:
            self._finish(job, SENT, now, sent_at=now, message_id=_message_id(self.config, job))
            self._audit.append(_audit(now, self.actor, "email.sent", job))
            self.summary.sent += 1
            self._refusals = self._bounces = 0
        elif isinstance(error, TransportUnavailable):
            # never reached the server: the claim goes back, the attempt uncounted
            self._results.append(
                Result(job.ref, DEFERRED, str(error), retry_at=now, give_back=True)
            )
            self.summary.stopped = str(error)
        elif isinstance(error, TemporaryFailure):
            if attempts >= MAX_ATTEMPTS:
                self._finish(job, FAILED, now, error=str(error))
                self.summary.failed += 1
            else:
                retry_at = now + retry_delay(attempts)
                self._finish(job, DEFERRED, now, error=str(error), retry_at=retry_at)
                self.summary.deferred += 1
        elif isinstance(error, InDoubt):
            self._finish(job, IN_DOUBT, now, error=str(error))
            self._audit.append(_audit(now, self.actor, "delivery.in_doubt", job))
            self.summary.in_doubt_new += 1
        elif isinstance(error, PermanentFailure):
            self.summary.failed += 1
            if error.bounce:
                self._results.append(Result(job.ref, FAILED, str(error)))
                self._bounce(job, error, now)
            else:
                self._finish(job, FAILED, now, error=str(error))
                self._refused(error)
        elif isinstance(error, BuildFailed):  # in the builder process
            self._unbuildable(job, str(error), now)
        else:  # a bug or a surprise: this message fails, the run goes on
            self._finish(job, FAILED, now, error=f"drip error: {type(error).__name__}: {error}")
            self.summary.failed += 1
            self.summary.errors += 1

    def _unbuildable(self, job: Job, reason: str, now: datetime) -> None:
        """A claimed message drip could not render or compose: it fails alone."""
        self._finish(job, FAILED, now, error=f"could not build the email: {reason}")
        self.summary.failed += 1
        self.summary.errors += 1

    def _finish(self, job: Job, status: str, now: datetime, **result: object) -> None:
        """Record the message's result and plan the enrollment's next step."""
        self._results.append(Result(job.ref, status, **result))  # type: ignore[arg-type]
        at = result.get("sent_at") or now
        retry_at = result.get("retry_at")
        job.records[job.step.key] = Record(status, at, retry_at)  # type: ignore[arg-type]
        if job.subscriber_id in self._bounced or job.enrollment_id is None:
            return  # a newsletter has no next step
        assert job.started_at is not None
        plan = plan_next(
            job.campaign,
            job.records,
            job.started_at,
            job.tz,
            self.config.clinic.send_window,
            self.config.clinic.min_gap,
        )
        self._next.append((job.enrollment_id, *_stored(plan)))

    def _refused(self, error: PermanentFailure) -> None:
        self._bounces = 0
        if error.refusal is None:
            return
        same = error.refusal == self._last_refusal
        self._refusals = self._refusals + 1 if same else 1
        self._last_refusal = error.refusal
        if self._refusals >= MAX_IDENTICAL_REFUSALS:
            self.summary.stopped = (
                f"{self._refusals} messages in a row refused with the same answer "
                f"({error}); check the relay settings (no patient was marked bounced)"
            )

    def _bounce(self, job: Job, error: PermanentFailure, now: datetime) -> None:
        self._refusals = 0
        self._bounces += 1
        self.summary.bounced += 1
        self._bounced.add(job.subscriber_id)
        sub = self.session.get(Subscriber, job.subscriber_id)
        if sub is not None and sub.status == ACTIVE:
            sub.status = BOUNCED
            suppress(self.session, sub.email, "hard-bounce", now)
            audit.record(
                self.session, now, self.actor, "subscriber.bounced", sub.id, error=str(error)[:500]
            )
            enrollment.sync_subscriber(self.session, self.config, sub, now)
        if self._bounces >= MAX_BOUNCES_IN_A_ROW:
            self.summary.stopped = (
                f"{self._bounces} addresses in a row refused as unknown ({error}); that "
                "looks like a relay problem, not a list problem: check the relay settings"
            )

    def _write(self) -> None:
        """Write the collected results, next steps and audit entries (the caller commits)."""
        now = self.clock()
        claims.record(self.session, self._results, self._next, self._audit, self.run_id, now)
        self._results, self._next, self._audit = [], [], []


# only if nobody changed the row's state since it was read (on SQLite the web side
# can commit between the planning read and this write): an unsubscribe stands
_STORE_PLAN = text(
    """UPDATE enrollments SET state = :b_state, next_step_key = :b_step, next_due_at = :b_due
    WHERE id = :b_id AND state = :b_was"""
).bindparams(bindparam("b_due", type_=UTCDateTime()), bindparam("b_id", type_=Integer))


def _store_plans(session: Session, rows: list[enrollment.EnrollmentRow]) -> None:
    """Write back what planning changed in these enrollments (one batched statement)."""
    if rows:
        session.connection().execute(
            _STORE_PLAN,
            [
                {
                    "b_id": r.id,
                    "b_state": r.state,
                    "b_step": r.next_step_key,
                    "b_due": r.next_due_at,
                    "b_was": r.was[0],
                }
                for r in rows
            ],
        )


def _stored(plan: Plan) -> tuple[str, str | None, datetime | None]:
    """What an enrollment row stores for a plan (see enrollment.apply_plan)."""
    if plan.blocked:
        return HELD, None, None
    if plan.finished:
        return FINISHED, None, None
    assert plan.step is not None
    return ENROLLED, plan.step.key, plan.due_at


def _message_id(config: Config, job: Job) -> str:
    return make_message_id(job.ref, config.clinic.sender_domain)


def _audit(at: datetime, actor: str, action: str, job: Job) -> dict[str, object]:
    """An audit row for what became of `job`'s message (written with the batch)."""
    # what audit.record writes (json.dumps(..., default=str, sort_keys=True)): the keys
    # already in order and plain strings, so the shared default encoder gives the same
    detail = {"campaign": job.campaign.key, "ref": job.ref, "step": job.step.key}
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "subscriber_id": job.subscriber_id,
        "detail": json.dumps(detail),
    }


def _row_of(subscriber_id: int, campaign: Campaign, step: Step) -> tuple[ColumnElement[bool], ...]:
    """The WHERE clauses naming one delivery row by its unique key."""
    return (
        Delivery.subscriber_id == subscriber_id,
        Delivery.campaign_key == campaign.key,
        Delivery.step_key == step.key,
    )


SUPERSEDED = (
    "campaigns.toml changed since this process loaded it; the next run uses the new version"
)


_ADOPTED = select(Meta.value).where(Meta.key == enrollment.FINGERPRINT_KEY)


def _adopted(session: Session) -> str | None:
    """The schedule fingerprint the enrollments were last planned with (not the ORM cache;
    read before every planning batch, so through the connection)."""
    session.flush()
    return session.connection().execute(_ADOPTED).scalar()


def superseded(session: Session, config: Config) -> bool:
    """Is `config` older than what the database was planned with and the file now says?

    A long-running process (`drip run`) that has not yet taken up an edit must
    neither re-plan everyone back to its old version nor send from it: a step the
    edit removed must not go out. A file that does not load is no newer version.
    """
    planned = _adopted(session)
    mine = config.schedule_fingerprint()
    if planned is None or planned == mine:
        return False
    try:
        on_disk = load_config(config.path).schedule_fingerprint()
    except (ConfigError, OSError):
        return False
    return on_disk != mine


def due_enrollments(session: Session, now: datetime, only_subscriber: int | None = None) -> array:
    """The ids of the enrollments due at `now`, oldest due first, as a compact array."""
    if only_subscriber is not None:  # a handful of rows, by that subscriber's own index
        rows = session.connection().execute(
            select(Enrollment.id, Enrollment.state, Enrollment.next_due_at)
            .where(Enrollment.subscriber_id == only_subscriber)
            .order_by(Enrollment.id)
        )
        return array("q", (i for i, state, at in rows if state == ENROLLED and at and at <= now))
    # through the Core connection: rows stream from the cursor into the array
    return array("q", (eid for (eid,) in session.connection().execute(due_query(now))))


def due_query(now: datetime) -> Select[Any]:
    """The ids of the due enrollments: a range of the (state, next_due_at, id) index."""
    return (
        select(Enrollment.id)
        .where(Enrollment.state == ENROLLED, Enrollment.next_due_at <= now)
        .order_by(Enrollment.next_due_at, Enrollment.id)  # the index's own order: no sort
    )


def count_due(engine: Engine, config: Config, now: datetime) -> int:
    """About how many emails are due now, series and newsletters (for a progress bar)."""
    with Session(engine) as session:
        total = 0
        series = session.scalar(
            select(func.count())
            .select_from(Enrollment)
            .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
            .where(
                Enrollment.state == ENROLLED,
                Enrollment.next_due_at <= now,
                Subscriber.status == ACTIVE,
            )
        )
        total += series or 0
        for newsletter in newsletters.scheduled(session, config):
            for zone_name, instant in newsletters.due_zones(session, config, newsletter, now):
                eligible = newsletters.eligible(config, newsletter, zone_name, instant, now)
                count = session.scalar(select(func.count()).select_from(eligible.subquery()))
                total += count or 0
        return total


def sweep_in_doubt(session: Session, now: datetime, run_id: str = "") -> int:
    """Rows still `claimed` by a run that is no longer alive (locking.dead_runs).

    Their messages may or may not have been accepted by the server, so they are
    marked in_doubt and their series held, never resent silently. The dead runs'
    enrollment leases are given back. Returns how many rows were found.
    """
    claimed = list(session.scalars(select(Delivery).where(Delivery.status == CLAIMED)))
    leased = set(
        session.scalars(select(Enrollment.leased_by).where(Enrollment.leased_by.is_not(None)))
    )
    runs = {r.run_id or "" for r in claimed} | {run for run in leased if run}
    dead = dead_runs(session, runs, run_id)
    rows = [r for r in claimed if (r.run_id or "") in dead]
    if dead:
        session.execute(
            update(Enrollment).where(Enrollment.leased_by.in_(dead)).values(leased_by=None)
        )
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
            .values(state=HELD, next_due_at=None, leased_by=None)
        )
    return len(rows)
