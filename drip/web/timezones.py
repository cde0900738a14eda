"""Time zones the signup form offers, and the server-side check of the answer."""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

# Shown first: the zones most patients of a US clinic live in, then the rest.
COMMON = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Puerto_Rico",
    "America/Toronto",
    "America/Vancouver",
    "Europe/London",
    "UTC",
)


@cache
def all_zones() -> tuple[str, ...]:
    """Every IANA zone this machine knows, minus legacy aliases like 'US/Eastern'."""
    zones = {z for z in available_timezones() if "/" in z or z == "UTC"}
    legacy = ("Etc/", "SystemV/", "US/", "posixrules", "Factory")
    return tuple(sorted(z for z in zones if not z.startswith(legacy)))


@cache
def _known() -> frozenset[str]:
    return frozenset(available_timezones()) | frozenset(COMMON)


def is_known_zone(name: str) -> bool:
    """Only names from the IANA list: never a path, never an arbitrary string."""
    return len(name) <= 64 and name in _known()


def label(zone: str) -> str:
    """'America/New_York' -> 'America / New York' for the drop-down."""
    return zone.replace("_", " ").replace("/", " / ")
