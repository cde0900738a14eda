"""Direct property tests of schedule.next_allowed and schedule.plan_next, checked
against tests/oracle.py (which walks the subscriber's clock) across DST changes
and zones with odd offsets: 1,500 hypothesis examples and a sweep of about 25,000
moments around every clock change of 2026-2027."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import allowed, first_allowed

from drip.config import Campaign, SendWindow, Step
from drip.rules import Rule
from drip.schedule import Record, in_window, next_allowed, plan_next
from drip.states import DeliveryStatus

ZONES = [
    "Australia/Lord_Howe",  # +10:30, DST moves the clock by half an hour
    "Asia/Kathmandu",  # +5:45
    "America/St_Johns",  # -3:30 with DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "Antarctica/Troll",  # DST moves the clock by two hours
    "Africa/Casablanca",  # clocks go back for Ramadan each year
    "Pacific/Kiritimati",  # +14: a different date from most of the world
    "America/Chicago",
    "Europe/London",
    "UTC",
]
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)


def transitions(zone: str) -> list[datetime]:
    """Every change of UTC offset in `zone` during 2026-2027 (to aim examples at)."""
    tz = ZoneInfo(zone)
    found, moment = [], YEAR_START
    offset = moment.astimezone(tz).utcoffset()
    while moment < YEAR_START + timedelta(days=730):
        later = moment + timedelta(hours=6)
        if later.astimezone(tz).utcoffset() != offset:
            low, high = moment, later  # bisect to the minute
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                if mid.astimezone(tz).utcoffset() == offset:
                    low = mid
                else:
                    high = mid
            found.append(high.replace(second=0, microsecond=0))
            offset = later.astimezone(tz).utcoffset()
        moment = later
    return found or [YEAR_START + timedelta(days=180)]


TRANSITIONS = {zone: transitions(zone) for zone in ZONES}
assert len(TRANSITIONS["Pacific/Chatham"]) >= 3 and len(TRANSITIONS["Africa/Casablanca"]) >= 3


def _moment(zone: str, near_change: bool, pick: int, seconds: int) -> tuple[datetime, ZoneInfo]:
    if near_change:  # within two days of one of the zone's offset changes
        changes = TRANSITIONS[zone]
        moment = changes[pick % len(changes)] + timedelta(seconds=seconds % (4 * 86400) - 2 * 86400)
    else:
        moment = YEAR_START + timedelta(seconds=seconds % (730 * 86400))
    return moment, ZoneInfo(zone)


# flat integer draws: cheap to generate, so thousands of examples run in seconds
moments_and_zones = st.builds(
    _moment,
    st.sampled_from(ZONES),
    st.booleans(),
    st.integers(0, 1000),
    st.integers(0, 2**32),
)


def _window(start: int, length: int, days: int) -> SendWindow:
    return SendWindow(
        start, min(start + length, 24), frozenset(d for d in range(7) if days >> d & 1)
    )


windows = st.builds(_window, st.integers(0, 23), st.integers(1, 24), st.integers(1, 127))


@settings(max_examples=1000, deadline=None)
@given(at=moments_and_zones, window=windows)
def test_next_allowed_is_the_first_moment_the_subscribers_clock_allows(at, window):
    moment, tz = at
    expected = first_allowed(moment, window, tz)
    assert next_allowed(moment, window, tz) == expected
    assert in_window(moment, window, tz) == allowed(moment, window, tz)
    assert allowed(expected, window, tz) and expected >= moment


def test_next_allowed_around_every_clock_change():
    """A sweep hypothesis would take minutes for: every offset change of every zone
    in 2026-2027; windows opening within four hours of the change's local time (an
    hour long, or to midnight); moments every 15 minutes from 6 hours before the
    change to 6 hours after."""
    checked = 0
    for zone, changes in TRANSITIONS.items():
        tz = ZoneInfo(zone)
        for change in changes:
            hour = (change - timedelta(minutes=1)).astimezone(tz).hour
            for start in {(hour + d) % 24 for d in range(-4, 5)}:
                for end in {start + 1, 24}:
                    window = SendWindow(start, end, frozenset(range(7)))
                    for quarter in range(-24, 24):
                        moment = change + timedelta(minutes=15 * quarter + 7)
                        assert next_allowed(moment, window, tz) == first_allowed(moment, window, tz)
                        checked += 1
    assert checked > 20_000


def test_a_weekly_hour_the_clock_skips_waits_a_week():
    """Troll, 29 March 2026: the clock jumps from 01:00 to 03:00, so a window of
    01:00-02:00 on Sundays only has no time that week (hypothesis found this)."""
    troll = ZoneInfo("Antarctica/Troll")
    sundays_one_am = SendWindow(1, 2, frozenset({6}))
    friday = datetime(2026, 3, 27, 1, 0, tzinfo=UTC)
    next_sunday = datetime(2026, 4, 5, 1, 0, tzinfo=troll).astimezone(UTC)  # 9 days on
    assert first_allowed(friday, sundays_one_am, troll) == next_sunday
    assert next_allowed(friday, sundays_one_am, troll) == next_sunday


def test_the_oracle_knows_what_the_clock_says():
    """Hand-checked examples, so the oracle itself is not taken on trust."""
    office = SendWindow(9, 17, frozenset(range(5)))
    kathmandu = ZoneInfo("Asia/Kathmandu")
    friday_evening = datetime(2026, 6, 5, 12, 0, tzinfo=UTC)  # 17:45 there
    assert not allowed(friday_evening, office, kathmandu)
    monday_nine = datetime(2026, 6, 8, 3, 15, tzinfo=UTC)  # 09:00 there
    assert first_allowed(friday_evening, office, kathmandu) == monday_nine
    # Lord Howe, 5 April 2026: 02:00 daylight time becomes 01:30 standard time
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    early = SendWindow(1, 2, frozenset(range(7)))
    start = datetime(2026, 4, 4, 14, 0, tzinfo=UTC)  # 01:00 daylight time
    assert first_allowed(start, early, lord_howe) == start
    # after 01:59 daylight the clock reads 01:30 again: still allowed, half an hour more
    assert allowed(datetime(2026, 4, 4, 15, 10, tzinfo=UTC), early, lord_howe)
    assert not allowed(datetime(2026, 4, 4, 15, 30, tzinfo=UTC), early, lord_howe)


# -- plan_next -------------------------------------------------------------------------

STATUSES = list(DeliveryStatus)
GAP = timedelta(hours=12)


@st.composite
def histories(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    """A campaign, how far a subscriber got in it, and what the database says."""
    specs = draw(
        st.lists(
            st.tuples(
                st.integers(0, 14 * 24 * 60),  # the step's delay, in minutes
                st.one_of(st.none(), windows),  # its own send window, if any
                st.integers(0, 20 * 24 * 60),  # when its row was written, after the last
                st.integers(0, len(STATUSES) + 1),  # its status; beyond: no row (inserted)
                st.integers(-1, 48),  # retry after so many hours (-1: none)
            ),
            min_size=1,
            max_size=6,
        )
    )
    steps = tuple(
        Step(f"s{i}", "S", "", "t", timedelta(minutes=delay), None, window)
        for i, (delay, window, *_rest) in enumerate(specs)
    )
    moment, tz = draw(moments_and_zones)
    started = moment - timedelta(minutes=draw(st.integers(0, 30 * 24 * 60)))
    recorded = draw(st.integers(0, len(steps)))  # how far the subscriber got
    records: dict[str, Record] = {}
    at = started
    for step, (_delay, _window, later, status, retry) in zip(steps[:recorded], specs, strict=False):
        at += timedelta(minutes=later)
        if status < len(STATUSES):
            retry_at = at + timedelta(hours=retry) if retry >= 0 else None
            records[step.key] = Record(STATUSES[status], at, retry_at)
    return Campaign("c", "C", Rule(), steps), records, started, tz


@settings(max_examples=500, deadline=None)
@given(history=histories(), clinic=windows)
def test_plan_next_follows_the_written_rules(history, clinic):
    campaign, records, started, tz = history
    plan = plan_next(campaign, records, started, tz, clinic, GAP)
    steps = campaign.steps
    recorded = [i for i, s in enumerate(steps) if s.key in records]
    last = records[steps[recorded[-1]].key] if recorded else None
    position = recorded[-1] if recorded else -1

    # steps added behind the subscriber's position are recorded as skipped
    assert plan.skip_inserted == tuple(
        s.key for i, s in enumerate(steps) if i < position and s.key not in records
    )
    if last is not None and last.status in (DeliveryStatus.CLAIMED, DeliveryStatus.IN_DOUBT):
        assert plan.blocked and plan.step is None and plan.due_at is None
        return
    assert not plan.blocked
    if last is not None and last.status == DeliveryStatus.DEFERRED:
        step = steps[position]  # the same step again, at its retry time
        window = step.send_window or clinic
        assert plan.step == step
        assert plan.due_at == first_allowed(last.retry_at or last.at, window, tz)
        return
    if position + 1 == len(steps):
        assert plan.finished and plan.step is None
        return
    step = steps[position + 1]
    window = step.send_window or clinic
    nominal = started + sum((s.delay for s in steps[: position + 2]), timedelta())
    earliest = nominal
    if last is not None:
        wait = min(GAP, step.delay) if last.status == DeliveryStatus.SENT else timedelta()
        earliest = max(nominal, last.at + wait)
    assert plan.step == step and not plan.finished
    assert plan.due_at is not None and allowed(plan.due_at, window, tz)
    assert plan.due_at == first_allowed(earliest, window, tz)
