"""Audience and `when` rules over symptom keys. Pure logic, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

RULE_KINDS = ("any", "all", "none")


@dataclass(frozen=True)
class Rule:
    """A subscriber matches when every present clause holds.

    any:  at least one of these symptoms
    all:  every one of these symptoms
    none: not one of these symptoms
    An empty rule matches everyone.
    """

    any: frozenset[str] = frozenset()
    all: frozenset[str] = frozenset()
    none: frozenset[str] = frozenset()

    def matches(self, symptoms: Iterable[str]) -> bool:
        have = set(symptoms)
        if self.any and not (self.any & have):
            return False
        if self.all and not self.all <= have:
            return False
        return not (self.none & have)

    def keys(self) -> frozenset[str]:
        return self.any | self.all | self.none

    def describe(self) -> str:
        parts = [
            f"{kind} of {', '.join(sorted(getattr(self, kind)))}"
            for kind in RULE_KINDS
            if getattr(self, kind)
        ]
        return "; ".join(parts) or "everyone"


EVERYONE = Rule()
