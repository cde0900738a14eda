"""Parse the delays marketers write in campaigns.toml: "3d", "12h", "1d12h", "P3D"."""

from __future__ import annotations

import re
from datetime import timedelta

_SHORT = re.compile(r"(\d+)\s*([wdhm])")
_SHORT_WHOLE = re.compile(r"(?:\s*\d+\s*[wdhm]\s*)+")
_ISO = re.compile(
    r"P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?"
)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


def parse_duration(text: str) -> timedelta:
    """Return the timedelta for a short form ("3d", "1d12h", "90m") or ISO-8601 ("P3DT4H").

    Raises ValueError with a message a marketer can act on.
    """
    raw = text.strip()
    try:
        return _parse(raw)
    except OverflowError:  # "99999999999d" is past what a date can hold
        raise ValueError(f"{text!r} is far too long") from None


def _parse(raw: str) -> timedelta:
    text = raw
    if _SHORT_WHOLE.fullmatch(raw.lower()):
        parts: dict[str, int] = {}
        for amount, unit in _SHORT.findall(raw.lower()):
            parts[_UNITS[unit]] = parts.get(_UNITS[unit], 0) + int(amount)
        return timedelta(**parts)
    iso = _ISO.fullmatch(raw.upper())
    if iso and raw.upper() not in ("P", "PT") and any(iso.groupdict().values()):
        g = {k: int(v or 0) for k, v in iso.groupdict().items()}
        return timedelta(weeks=g["w"], days=g["d"], hours=g["h"], minutes=g["m"], seconds=g["s"])
    raise ValueError(
        f'{text!r} is not a delay; write it like "0d", "3d", "12h", "1d12h" or ISO-8601 like "P3D"'
    )


def format_duration(delta: timedelta) -> str:
    """The short form back again, for listings: timedelta(days=1, hours=12) -> "1d12h"."""
    minutes = int(delta.total_seconds() // 60)
    if minutes == 0:
        return "0d"
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (mins, "m")) if n)
