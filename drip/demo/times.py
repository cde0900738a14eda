"""Times on the demo's pages, in a patient's own time zone with the zone named.

drip keeps every time in UTC; a newcomer thinks in their own. The catcher shows
each email at the recipient's local time, and the demo clock at the newest
patient's (the newcomer who just signed up), with UTC kept in a tooltip.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class LocalTime:
    text: str  # "Mon 01 Jun 10:00 CDT"
    zone: str  # "America/Chicago"
    utc: str  # "Mon 01 Jun 2026 15:00 UTC", for the title attribute
    iso: str  # for <time datetime="...">


def local_time(moment: datetime, zone: str, pattern: str = "%a %d %b %H:%M") -> LocalTime:
    """`moment` (aware, or naive UTC as the database returns it) in `zone`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz, zone = ZoneInfo("UTC"), "UTC"
    here = moment.astimezone(tz)
    utc = moment.astimezone(UTC)
    return LocalTime(
        text=f"{here.strftime(pattern)} {here.tzname() or zone}",
        zone=zone,
        utc=f"{utc:%a %d %b %Y %H:%M} UTC",
        iso=utc.isoformat(),
    )
