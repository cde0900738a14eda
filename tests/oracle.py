"""An oracle for send windows that shares no code with drip/schedule.py.

It answers "may we send at this instant?" by reading the subscriber's wall clock,
and "when is the next such instant?" by walking forward through time, instead
of constructing local opening times the way schedule.next_allowed does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from drip.config import SendWindow

MINUTE = timedelta(minutes=1)
QUARTER = timedelta(minutes=15)


def allowed(moment: datetime, window: SendWindow, tz: ZoneInfo) -> bool:
    """Does the subscriber's clock show an allowed weekday and hour at `moment`?"""
    local = moment.astimezone(tz)
    return local.weekday() in window.weekdays and window.start_hour <= local.hour < window.end_hour


def first_allowed(moment: datetime, window: SendWindow, tz: ZoneInfo) -> datetime:
    """The first instant at or after `moment` when sending is allowed, found by walking.

    Walks quarter-hour by quarter-hour: every UTC offset in use is a whole number
    of quarter hours, so the local hour can only change on a UTC quarter hour
    (checked below). The last quarter before the hit is then walked minute by
    minute, so a change of hour off the quarter would be caught, not skipped.
    """
    moment = moment.astimezone(UTC)
    if allowed(moment, window, tz):
        return moment
    # the next whole quarter hour after `moment`
    floor = moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)
    probe = floor + QUARTER
    # a week, and one more when the clock skips the only allowed hour of the week
    limit = moment + timedelta(days=15)
    while not allowed(probe, window, tz):
        offset = probe.astimezone(tz).utcoffset()
        assert offset is not None and offset.total_seconds() % 900 == 0, (tz, offset)
        probe += QUARTER
        assert probe < limit, f"no allowed time within two weeks of {moment} in {window}"
    minute = max(probe - QUARTER, moment.replace(second=0, microsecond=0) + MINUTE)
    while minute < probe:
        assert not allowed(minute, window, tz), f"the hour changed off the quarter at {minute}"
        minute += MINUTE
    return probe
