"""Counted nouns for the lines drip prints: "1 week", "2 weeks"."""

from __future__ import annotations


def plural(count: int, singular: str, many: str | None = None) -> str:
    """`count` and the noun in the right number; `many` for irregular plurals."""
    return f"{count:,} {singular if count == 1 else many or singular + 's'}"
