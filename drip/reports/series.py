"""Weekly numbers for the report, computed from plain rows. Pure: no I/O, no clock.

Weeks start on Monday 00:00 in the clinic's time zone. Events come from the audit
log (and the subscriber rows where the log says nothing, see data.py).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..config import Config
from ..states import DeliveryStatus

# Event kinds: what happened to a subscriber, and when
SIGNUP, CONFIRM, UNSUBSCRIBE, BOUNCE, COMPLAINT, RESTORE = (
    "signup",
    "confirm",
    "unsubscribe",
    "bounce",
    "complaint",
    "restore",
)
BECOMES_ACTIVE = frozenset({CONFIRM, RESTORE})
STOPS_BEING_ACTIVE = frozenset({UNSUBSCRIBE, BOUNCE, COMPLAINT})

NEWSLETTER_PREFIX = "newsletter:"
SERIES, NEWSLETTER = "series", "newsletter"


@dataclass(frozen=True)
class Event:
    at: datetime
    subscriber_id: int
    kind: str


@dataclass(frozen=True)
class DeliveryRow:
    """One deliveries row: `at` is when it was sent, else when it last changed."""

    subscriber_id: int
    campaign_key: str
    step_key: str
    status: str
    at: datetime
    refused: bool = False  # refused at RCPT with a hard 5xx: a bounce (drip/rates.py)


@dataclass(frozen=True)
class Weeks:
    starts: tuple[datetime, ...]  # Monday 00:00 clinic time, as aware datetimes
    end: datetime  # the period is [starts[0], end)
    tz: ZoneInfo

    @property
    def since(self) -> datetime:
        return self.starts[0]

    def index(self, moment: datetime) -> int | None:
        """The week `moment` falls in, or None outside the period."""
        if moment < self.since or moment >= self.end:
            return None
        return bisect.bisect_right(self.starts, moment) - 1

    def closes(self) -> list[datetime]:
        """The end of each week (the period's end for the last, unfinished one)."""
        return [min(s, self.end) for s in self.starts[1:]] + [self.end]

    def labels(self) -> list[str]:
        """Short labels for chart axes: "Jun 1"."""
        return [f"{s.astimezone(self.tz):%b} {s.astimezone(self.tz).day}" for s in self.starts]

    def dates(self) -> list[str]:
        """The Monday of each week, ISO: for the tables."""
        return [f"{s.astimezone(self.tz):%Y-%m-%d}" for s in self.starts]

    def complete(self, i: int) -> bool:
        return i + 1 < len(self.starts) or self.end >= self.starts[i] + timedelta(days=7)

    def __len__(self) -> int:
        return len(self.starts)


def _monday(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day - timedelta(days=day.weekday()), time(0), tzinfo=tz)


def make_weeks(
    now: datetime, tz: ZoneInfo, since: datetime | None = None, count: int | None = None
) -> Weeks:
    """The report's weeks.

    since and count: `count` weeks from the week holding `since` (not past `now`);
    since only: from there to `now`; count only: the last `count` weeks up to `now`.
    """
    if since is None:
        first = _monday(now.astimezone(tz).date(), tz) - timedelta(weeks=(count or 12) - 1)
        first_day = first.date()
    else:
        first_day = _monday(since.astimezone(tz).date(), tz).date()
    starts: list[datetime] = []
    day = first_day
    # local dates, then localized: a week is 7 calendar days even across a DST change
    while datetime.combine(day, time(0), tzinfo=tz) < now and (
        count is None or since is None or len(starts) < count
    ):
        starts.append(datetime.combine(day, time(0), tzinfo=tz))
        day += timedelta(days=7)
    if not starts:  # `since` is after `now`: one empty week, not an error
        starts.append(datetime.combine(first_day, time(0), tzinfo=tz))
    end = now
    if since is not None and count is not None:
        end = min(now, starts[-1] + timedelta(days=7))
    return Weeks(tuple(starts), max(end, starts[0]), tz)


def per_week(moments: Iterable[datetime], weeks: Weeks) -> list[int]:
    counts = [0] * len(weeks)
    for moment in moments:
        i = weeks.index(moment)
        if i is not None:
            counts[i] += 1
    return counts


def signups_and_confirmations(events: Sequence[Event], weeks: Weeks) -> tuple[list[int], list[int]]:
    return (
        per_week((e.at for e in events if e.kind == SIGNUP), weeks),
        per_week((e.at for e in events if e.kind == CONFIRM), weeks),
    )


def active_changes(events: Sequence[Event]) -> list[tuple[datetime, int]]:
    """(moment, +1 or -1) each time someone becomes active or stops being active.

    Replays each subscriber's events in time order; a confirmation of someone already
    active, or an unsubscribe of someone not active, changes nothing. So the same
    fact seen twice (in the audit log and on the subscriber row) counts once.
    """
    active: set[int] = set()
    changes: list[tuple[datetime, int]] = []
    for event in sorted(events, key=lambda e: e.at):  # stable: ties keep log order
        who = event.subscriber_id
        if event.kind in BECOMES_ACTIVE and who not in active:
            active.add(who)
            changes.append((event.at, +1))
        elif event.kind in STOPS_BEING_ACTIVE and who in active:
            active.discard(who)
            changes.append((event.at, -1))
    return changes


def active_at(events: Sequence[Event], moments: Sequence[datetime]) -> list[int]:
    """How many subscribers were active just before each moment."""
    changes = active_changes(events)
    times = [at for at, _ in changes]
    running = [0]
    for _, delta in changes:
        running.append(running[-1] + delta)
    return [running[bisect.bisect_left(times, moment)] for moment in moments]


def active_subscriber_ids(events: Sequence[Event], moment: datetime) -> set[int]:
    """Who was active just before `moment` (tests compare this with the database)."""
    active: set[int] = set()
    for event in sorted(events, key=lambda e: e.at):
        if event.at >= moment:
            break
        if event.kind in BECOMES_ACTIVE:
            active.add(event.subscriber_id)
        elif event.kind in STOPS_BEING_ACTIVE:
            active.discard(event.subscriber_id)
    return active


# -- what was sent -------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A series (campaign) or a newsletter, as the report names it."""

    key: str  # deliveries.campaign_key
    label: str
    kind: str  # SERIES or NEWSLETTER
    order: int


@dataclass(frozen=True)
class Email:
    """One email: a step of a series, or a newsletter."""

    source: Source
    step_key: str
    label: str
    subject: str
    order: tuple[int, int]


class Catalog:
    """Names and order of series, steps and newsletters, from campaigns.toml.

    Emails no longer in campaigns.toml still show, under their keys, after the rest.
    """

    def __init__(self, config: Config | None):
        self.sources: dict[str, Source] = {}
        self.emails: dict[tuple[str, str], Email] = {}
        if config is None:
            return
        for c in config.campaigns:
            source = self._source(c.key, c.name, SERIES)
            for n, step in enumerate(c.steps):
                self._email(source, step.key, f"{c.name}, email {n + 1}: {step.key}", step.subject)
        # the newsletters (issue 9) live in [[newsletter]]; older configs have none
        for letter in getattr(config, "newsletters", ()) or ():
            key = str(letter.key)
            name = str(getattr(letter, "name", "") or key)
            source = self._source(NEWSLETTER_PREFIX + key, name, NEWSLETTER)
            self._email(source, key, f"Newsletter: {name}", str(getattr(letter, "subject", "")))

    def _source(self, key: str, label: str, kind: str) -> Source:
        source = Source(key, label, kind, len(self.sources))
        self.sources[key] = source
        return source

    def _email(self, source: Source, step: str, label: str, subject: str) -> None:
        order = (source.order, sum(1 for k in self.emails if k[0] == source.key))
        self.emails[(source.key, step)] = Email(source, step, label, subject, order)

    def source(self, campaign_key: str) -> Source:
        if campaign_key not in self.sources:
            if campaign_key.startswith(NEWSLETTER_PREFIX):
                key = campaign_key.removeprefix(NEWSLETTER_PREFIX)
                self._source(campaign_key, key, NEWSLETTER)
            else:
                self._source(campaign_key, campaign_key, SERIES)
        return self.sources[campaign_key]

    def email(self, campaign_key: str, step_key: str) -> Email:
        if (campaign_key, step_key) not in self.emails:
            source = self.source(campaign_key)
            label = (
                f"Newsletter: {source.label}"
                if source.kind == NEWSLETTER
                else f"{source.label}: {step_key}"
            )
            self._email(source, step_key, label, "")
        return self.emails[(campaign_key, step_key)]


def sent_per_week(
    rows: Iterable[DeliveryRow], weeks: Weeks, catalog: Catalog
) -> list[tuple[Source, list[int]]]:
    """Emails sent each week, per series and per newsletter (those with any)."""
    table: dict[str, list[int]] = {}
    for row in rows:
        i = weeks.index(row.at) if row.status == DeliveryStatus.SENT else None
        if i is not None:
            table.setdefault(row.campaign_key, [0] * len(weeks))[i] += 1
    sources = sorted(
        (catalog.source(key) for key in table), key=lambda s: (s.kind != SERIES, s.order)
    )
    return [(s, table[s.key]) for s in sources]


# -- who left after which email --------------------------------------------------------


@dataclass
class Leaving:
    email: Email | None  # None: unsubscribed before drip sent them anything
    sent: int = 0
    unsubscribed: int = 0

    @property
    def per_thousand(self) -> float | None:
        return 1000 * self.unsubscribed / self.sent if self.sent else None


def attribute_unsubscribes(
    unsubscribes: Iterable[Event], sent: Iterable[DeliveryRow]
) -> list[tuple[Event, DeliveryRow | None]]:
    """Each unsubscribe with the last email drip sent that person before it (or None)."""
    history: dict[int, list[DeliveryRow]] = {}
    for row in sent:
        if row.status == DeliveryStatus.SENT:
            history.setdefault(row.subscriber_id, []).append(row)
    for rows in history.values():
        rows.sort(key=lambda r: r.at)
    result: list[tuple[Event, DeliveryRow | None]] = []
    for event in unsubscribes:
        rows = history.get(event.subscriber_id, [])
        i = bisect.bisect_right([r.at for r in rows], event.at)
        result.append((event, rows[i - 1] if i else None))
    return result


def leaving_table(
    events: Sequence[Event],
    deliveries: Sequence[DeliveryRow],
    history: Sequence[DeliveryRow],
    weeks: Weeks,
    catalog: Catalog,
) -> list[Leaving]:
    """Per email: sent in the period, and unsubscribes for which it was the last email.

    `deliveries`: the rows of the period (counted as sent); `history`: every email
    sent to the people who unsubscribed, from before the period too. An unsubscribe
    counts when the email it follows was sent in the period and the unsubscribe
    happened before the period's end.
    """
    table: dict[tuple[str, str], Leaving] = {}

    def row(campaign: str, step: str) -> Leaving:
        key = (campaign, step)
        if key not in table:
            table[key] = Leaving(catalog.email(campaign, step))
        return table[key]

    for d in deliveries:
        if d.status == DeliveryStatus.SENT and weeks.index(d.at) is not None:
            row(d.campaign_key, d.step_key).sent += 1
    before_any = Leaving(None)
    leaving = [e for e in events if e.kind == UNSUBSCRIBE and e.at < weeks.end]
    for event, last in attribute_unsubscribes(leaving, history):
        if last is None:
            before_any.unsubscribed += weeks.index(event.at) is not None
        elif weeks.index(last.at) is not None:
            row(last.campaign_key, last.step_key).unsubscribed += 1
    rows = sorted(table.values(), key=lambda r: r.email.order if r.email else (0, 0))
    return rows + ([before_any] if before_any.unsubscribed else [])


# -- failures and bounces ------------------------------------------------------------


def problems_per_week(
    rows: Iterable[DeliveryRow], later_bounces: Iterable[datetime], weeks: Weeks
) -> dict[str, list[int]]:
    """Bounces (refused at sending, or returned later), other failures and in-doubt
    deliveries, by the week they happened."""
    refused: list[datetime] = []
    failed: list[datetime] = []
    in_doubt: list[datetime] = []
    for row in rows:
        if row.status == DeliveryStatus.FAILED:
            (refused if row.refused else failed).append(row.at)
        elif row.status == DeliveryStatus.IN_DOUBT:
            in_doubt.append(row.at)
    return {
        "bounced": per_week([*refused, *later_bounces], weeks),
        "failed": per_week(failed, weeks),
        "in_doubt": per_week(in_doubt, weeks),
    }


def status_counts(rows: Iterable[DeliveryRow], weeks: Weeks) -> dict[tuple[str, str], Counter[str]]:
    """(campaign, step) -> how many deliveries of each status changed in the period."""
    table: dict[tuple[str, str], Counter[str]] = {}
    for row in rows:
        if weeks.index(row.at) is not None:
            counts = table.setdefault((row.campaign_key, row.step_key), Counter())
            counts[row.status] += 1
            counts["refused"] += row.refused
    return table
