"""Line numbers for TOML field paths.

tomllib gives values but no positions, so error messages would say only *what* is
wrong. This scans the raw text once and maps field paths such as
`campaign[0].step[2].delay` to the line that sets them, for the table shapes
campaigns.toml uses (tables, arrays of tables, key = value, inline tables).
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_PART = r"(?:\"[^\"]*\"|[A-Za-z0-9_\-]+)"
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")
_PARTS = re.compile(_PART)


def field_lines(text: str) -> dict[str, int]:
    """Map each field path to its 1-based line number."""
    lines: dict[str, int] = {}
    counters: dict[str, int] = {}  # array-of-tables path -> last index used
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            is_array = header.group(1) == "[["
            names = [n.strip().strip('"') for n in header.group(2).split(".")]
            current = _resolve(names, counters, is_array)
            lines.setdefault(current, number)
            continue
        key = _KEY.match(line)
        if key:
            # a dotted key (`send_window.start = 9`) sets its table and the field
            path = current
            for part in _PARTS.findall(key.group(1)):
                name = part.strip('"')
                path = f"{path}.{name}" if path else name
                lines.setdefault(path, number)
    return lines


def _resolve(names: list[str], counters: dict[str, int], is_array: bool) -> str:
    """Turn `campaign.step` into `campaign[1].step[3]` using the arrays seen so far."""
    path = ""
    for i, name in enumerate(names):
        path = f"{path}.{name}" if path else name
        last = i == len(names) - 1
        if last and is_array:
            # children are keyed under their parent's index, so each parent
            # element numbers its own children from zero
            counters[path] = counters.get(path, -1) + 1
            path = f"{path}[{counters[path]}]"
        elif path in counters:
            path = f"{path}[{counters[path]}]"
    return path


def line_for(lines: dict[str, int], path: str) -> int | None:
    """The line of `path`, or of its nearest enclosing field that has one."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None
