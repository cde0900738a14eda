"""Audience and `when` rules, against their definition in the README."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drip.config import SendWindow
from drip.rules import EVERYONE, Rule
from drip.schedule import next_allowed

KEYS = st.frozensets(st.sampled_from("abcde"))


@settings(max_examples=500, deadline=None)
@given(any_=KEYS, all_=KEYS, none=KEYS, have=KEYS)
def test_a_rule_matches_when_every_clause_holds(any_, all_, none, have):
    rule = Rule(any=any_, all=all_, none=none)
    expected = (
        (not any_ or bool(any_ & have)) and all_ <= have and not (none & have)
    )  # the README's wording, clause by clause
    assert rule.matches(have) is expected
    assert rule.keys() == any_ | all_ | none
    assert EVERYONE.matches(have) and EVERYONE.describe() == "everyone"


def test_describe_names_each_clause():
    rule = Rule(any=frozenset({"b", "a"}), all=frozenset({"c"}), none=frozenset({"d"}))
    assert rule.describe() == "any of a, b; all of c; none of d"


@pytest.mark.parametrize("window", [SendWindow(9, 9), SendWindow(9, 17, frozenset())])
def test_a_window_with_no_time_is_refused(window):
    with pytest.raises(ValueError, match="allows no time at all"):
        next_allowed(datetime(2026, 6, 1, tzinfo=UTC), window, ZoneInfo("UTC"))
