"""When is a subscriber's next step due? Pure logic: no I/O, `now` always passed in.

The rules (also in the README):
- Step n is due at enrollment start + the delays of steps 1..n, moved forward to
  the next moment inside its send window, in the subscriber's own time zone.
- Steps go in order: step n waits until step n-1 is recorded (sent, skipped or
  failed). After a *sent* step the next one also waits at least
  min(clinic.min_gap, its own delay), so a run that catches up after an outage
  does not fire a whole series in a few minutes.
- A step's identity is its key. A step added *before* the subscriber's position
  is recorded as skipped for them; a removed step is simply never due; a changed
  delay moves every step not yet sent.
- A step waiting on an in-flight or in-doubt delivery blocks the rest of the
  campaign for that subscriber until it is resolved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from .campaigns import Campaign, SendWindow, Step
from .states import BLOCKING, DeliveryStatus

# the old names, still imported by the send pipeline
CLAIMED = DeliveryStatus.CLAIMED
SENT = DeliveryStatus.SENT
SKIPPED = DeliveryStatus.SKIPPED
DEFERRED = DeliveryStatus.DEFERRED
FAILED = DeliveryStatus.FAILED
IN_DOUBT = DeliveryStatus.IN_DOUBT


def in_window(moment: datetime, window: SendWindow, tz: ZoneInfo) -> bool:
    """Does the subscriber's clock show an allowed weekday and hour at `moment`?"""
    local = moment.astimezone(tz)
    return local.weekday() in window.weekdays and window.start_hour <= local.hour < window.end_hour


def next_allowed(moment: datetime, window: SendWindow, tz: ZoneInfo) -> datetime:
    """The earliest instant at or after `moment` that lies inside `window` in `tz` (UTC).

    Follows the subscriber's wall clock through daylight-saving changes: an hour
    that does not exist that day is never used, and an hour the clock shows
    twice is allowed both times.
    """
    if not window.weekdays or window.start_hour >= window.end_hour:
        raise ValueError(f"send window {window.describe()} allows no time at all")
    probe = moment.astimezone(UTC)
    local = probe.astimezone(tz)  # each probe is read on the local clock once: twice per email
    for _ in range(16):  # a week of openings, and the odd clock change between them
        if local.weekday() in window.weekdays and window.start_hour <= local.hour < window.end_hour:
            return probe
        opening = _next_opening(probe, local, window, tz)
        at_opening = opening.astimezone(tz)
        # no clock change in between: the clock runs on to the opening (changes are
        # weeks apart, so at most one lies between two probes)
        if local.utcoffset() == at_opening.utcoffset():
            probe, local = opening, at_opening
        else:
            probe = _clock_change(probe, opening, tz)
            local = probe.astimezone(tz)
    raise AssertionError(f"no time in {window.describe()} after {moment}")  # pragma: no cover


def _next_opening(after: datetime, local: datetime, window: SendWindow, tz: ZoneInfo) -> datetime:
    """The next instant after `after` (`local` on the clock) at which the clock,
    running on without a change, would first show an allowed hour: the start hour
    of today or a later allowed day."""
    day = local.date() if local.hour < window.start_hour else local.date() + timedelta(days=1)
    while day.weekday() not in window.weekdays:
        day += timedelta(days=1)
    opening = datetime.combine(day, time(window.start_hour), tz)  # the first time it shows
    if opening.astimezone(UTC) <= after:  # passed already: the clock shows it again later
        opening = opening.replace(fold=1)
    return opening.astimezone(UTC)


def _clock_change(start: datetime, end: datetime, tz: ZoneInfo) -> datetime:
    """The instant in (start, end] when the UTC offset changes, to the second."""
    low, high = math.floor(start.timestamp()), math.ceil(end.timestamp())
    offset = start.astimezone(tz).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


@dataclass(frozen=True)
class Record:
    """What the database holds for one step of one subscriber's campaign."""

    status: DeliveryStatus
    at: datetime  # when it reached this status (sent_at for sent rows)
    retry_at: datetime | None = None  # for deferred rows


class Plan(NamedTuple):
    """What to do next for one enrollment (a tuple: made twice per email sent)."""

    step: Step | None  # the next step to work on; None when finished or blocked
    due_at: datetime | None
    skip_inserted: tuple[str, ...] = ()  # steps added behind the subscriber
    blocked: bool = False
    finished: bool = False


def plan_next(
    campaign: Campaign,
    records: Mapping[str, Record],
    started_at: datetime,
    tz: ZoneInfo,
    clinic_window: SendWindow,
    min_gap: timedelta,
) -> Plan:
    """Decide the next step of `campaign` for a subscriber with these delivery `records`."""
    steps, where = campaign.steps, campaign.positions
    position = max((where.get(key, -1) for key in records), default=-1)
    inserted = tuple(s.key for s in steps[: max(position, 0)] if s.key not in records)
    last = records[steps[position].key] if position >= 0 else None

    if last is not None and last.status in BLOCKING:
        return Plan(None, None, inserted, blocked=True)
    if last is not None and last.status == DeliveryStatus.DEFERRED:
        step = steps[position]
        window = step.send_window or clinic_window
        retry = last.retry_at or last.at
        return Plan(step, next_allowed(retry, window, tz), inserted)

    index = position + 1
    if index >= len(steps):
        return Plan(None, None, inserted, finished=True)
    step = steps[index]
    due = started_at + campaign.offsets[index]
    if last is not None:
        gap = min(min_gap, step.delay) if last.status == DeliveryStatus.SENT else timedelta(0)
        due = max(due, last.at + gap)
    return Plan(step, next_allowed(due, step.send_window or clinic_window, tz), inserted)
