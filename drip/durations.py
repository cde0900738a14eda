"""Parse the delays marketers write in campaigns.toml: "3d", "12h", "1d12h", "P3D".

Minutes are written "min": a bare "m" reads as a month to many people, so "1m"
is refused with both readings spelled out rather than silently meaning a minute.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNIT = r"(?:w|d|h|min)"
_SHORT = re.compile(rf"(\d+)\s*({_UNIT})")
_SHORT_WHOLE = re.compile(rf"(?:\s*\d+\s*{_UNIT}\s*)+")
# the same, but with the ambiguous "m" allowed: only to explain the refusal
_WITH_M = re.compile(r"(?:\s*\d+\s*(?:w|d|h|min|m)\s*)+")
_BARE_M = re.compile(r"(\d+)\s*m(?!in)")
_ISO = re.compile(
    r"P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?"
)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "min": "minutes"}


def parse_duration(text: str) -> timedelta:
    """Return the timedelta for a short form ("3d", "1d12h", "90min") or ISO-8601 ("P3DT4H").

    Raises ValueError with a message a marketer can act on.
    """
    try:
        return _parse(text, text.strip())
    except OverflowError:  # "99999999999d" is past what a date can hold
        raise ValueError(f"{text!r} is far too long") from None


def _parse(text: str, raw: str) -> timedelta:
    lower = raw.lower()
    if _SHORT_WHOLE.fullmatch(lower):
        parts: dict[str, int] = {}
        for amount, unit in _SHORT.findall(lower):
            parts[_UNITS[unit]] = parts.get(_UNITS[unit], 0) + int(amount)
        return timedelta(**parts)
    if _WITH_M.fullmatch(lower):
        minutes = _BARE_M.sub(r"\1min", lower).replace(" ", "")
        if "h" in lower:  # "2h30m": only minutes make sense
            raise ValueError(f'{text!r}: write minutes as "min", like "{minutes}"')
        months = _BARE_M.sub(lambda m: f"{int(m.group(1)) * 30}d", lower).replace(" ", "")
        raise ValueError(
            f'{text!r} could mean minutes or months; did you mean "{minutes}" (minutes) '
            f'or "{months}" (days)?'
        )
    iso = _ISO.fullmatch(raw.upper())
    if iso and raw.upper() not in ("P", "PT") and any(iso.groupdict().values()):
        g = {k: int(v or 0) for k, v in iso.groupdict().items()}
        return timedelta(weeks=g["w"], days=g["d"], hours=g["h"], minutes=g["m"], seconds=g["s"])
    raise ValueError(
        f'{text!r} is not a delay; write it like "0d", "3d", "12h", "1d12h", "90min" '
        'or ISO-8601 like "P3D"'
    )


def format_duration(delta: timedelta) -> str:
    """The short form back again, for listings: timedelta(days=1, hours=12) -> "1d12h"."""
    minutes = int(delta.total_seconds() // 60)
    if minutes == 0:
        return "0d"
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (mins, "min")) if n)
