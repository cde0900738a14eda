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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
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


def next_allowed(moment: datetime, window: SendWindow, tz: ZoneInfo) -> datetime:
    """The earliest instant at or after `moment` that lies inside `window` in `tz` (UTC)."""
    local = moment.astimezone(tz)
    for _ in range(8):  # a week always contains an allowed day
        day = local.date()
        if day.weekday() in window.weekdays:
            opens = datetime.combine(day, time(window.start_hour), tz)
            closes = (
                datetime.combine(day + timedelta(days=1), time(0), tz)
                if window.end_hour == 24
                else datetime.combine(day, time(window.end_hour), tz)
            )
            if local < opens:
                return opens.astimezone(UTC)
            if local < closes:
                return local.astimezone(UTC)
        local = datetime.combine(day + timedelta(days=1), time(0), tz)
    raise ValueError(f"send window {window.describe()} allows no time at all")


def in_window(moment: datetime, window: SendWindow, tz: ZoneInfo) -> bool:
    return next_allowed(moment, window, tz) == moment.astimezone(UTC)


@dataclass(frozen=True)
class Record:
    """What the database holds for one step of one subscriber's campaign."""

    status: DeliveryStatus
    at: datetime  # when it reached this status (sent_at for sent rows)
    retry_at: datetime | None = None  # for deferred rows


@dataclass(frozen=True)
class Plan:
    """What to do next for one enrollment."""

    step: Step | None  # the next step to work on; None when finished or blocked
    due_at: datetime | None
    skip_inserted: tuple[str, ...] = field(default=())  # steps added behind the subscriber
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
    steps = campaign.steps
    position = max((i for i, s in enumerate(steps) if s.key in records), default=-1)
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
    due = started_at + sum((s.delay for s in steps[: index + 1]), timedelta(0))
    if last is not None:
        gap = min(min_gap, step.delay) if last.status == DeliveryStatus.SENT else timedelta(0)
        due = max(due, last.at + gap)
    return Plan(step, next_allowed(due, step.send_window or clinic_window, tz), inserted)
