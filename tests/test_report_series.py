"""The report's pure parts alone: weeks, active counts, attribution, chart geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from drip.reports import charts
from drip.reports.series import (
    BOUNCE,
    COMPLAINT,
    CONFIRM,
    RESTORE,
    SIGNUP,
    UNSUBSCRIBE,
    Catalog,
    DeliveryRow,
    Event,
    active_at,
    active_changes,
    attribute_unsubscribes,
    leaving_table,
    make_weeks,
    problems_per_week,
    sent_per_week,
)

CHICAGO = ZoneInfo("America/Chicago")


def utc(day: int, hour: int = 15, month: int = 6) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


# -- weeks ---------------------------------------------------------------------------


def test_weeks_start_on_monday_midnight_clinic_time_and_end_now():
    weeks = make_weeks(utc(24), CHICAGO, count=3)  # Wednesday Jun 24
    assert weeks.dates() == ["2026-06-08", "2026-06-15", "2026-06-22"]
    assert weeks.since == datetime(2026, 6, 8, tzinfo=CHICAGO)
    assert weeks.end == utc(24)
    assert weeks.labels() == ["Jun 8", "Jun 15", "Jun 22"]
    assert [weeks.complete(i) for i in range(3)] == [True, True, False]
    # Sunday 23:30 in Chicago is still the week of Jun 15, though it is Monday in UTC
    assert weeks.index(datetime(2026, 6, 22, 4, 30, tzinfo=UTC)) == 1
    assert weeks.index(datetime(2026, 6, 22, 5, 0, tzinfo=UTC)) == 2
    assert weeks.index(utc(7)) is None and weeks.index(utc(25)) is None


def test_weeks_from_a_date_across_a_dst_change():
    # DST ends in Chicago on Sunday 2026-11-01: weeks stay Monday midnight local
    weeks = make_weeks(utc(10, month=11), CHICAGO, since=datetime(2026, 10, 21, tzinfo=CHICAGO))
    assert weeks.dates() == ["2026-10-19", "2026-10-26", "2026-11-02", "2026-11-09"]
    assert [s.astimezone(CHICAGO).hour for s in weeks.starts] == [0, 0, 0, 0]
    assert weeks.starts[2].astimezone(UTC) - weeks.starts[1].astimezone(UTC) == timedelta(
        days=7, hours=1
    )


def test_since_and_count_give_a_fixed_period_and_since_after_now_one_empty_week():
    weeks = make_weeks(utc(24), CHICAGO, since=datetime(2026, 6, 1, tzinfo=CHICAGO), count=2)
    assert weeks.dates() == ["2026-06-01", "2026-06-08"]
    assert weeks.end == datetime(2026, 6, 15, tzinfo=CHICAGO)
    assert all(weeks.complete(i) for i in range(2))
    late = make_weeks(utc(1), CHICAGO, since=datetime(2026, 7, 1, tzinfo=CHICAGO))
    assert len(late) == 1 and late.index(utc(1)) is None


# -- active subscribers ------------------------------------------------------------------


def test_active_replays_each_persons_history_once():
    events = [
        Event(utc(1), 1, SIGNUP),
        Event(utc(1), 1, CONFIRM),
        Event(utc(1), 1, CONFIRM),  # the same fact from the log and the row: once
        Event(utc(2), 2, CONFIRM),
        Event(utc(3), 2, UNSUBSCRIBE),
        Event(utc(3), 2, UNSUBSCRIBE),
        Event(utc(4), 3, UNSUBSCRIBE),  # never active: nothing to stop
        Event(utc(5), 2, CONFIRM),  # signed up again and confirmed
        Event(utc(6), 1, BOUNCE),
        Event(utc(7), 1, RESTORE),  # a mistaken bounce undone
        Event(utc(8), 2, COMPLAINT),
    ]
    assert [delta for _, delta in active_changes(events)] == [1, 1, -1, 1, -1, 1, -1]
    moments = [utc(d, 0) for d in range(1, 10)]
    assert active_at(events, moments) == [0, 1, 2, 1, 1, 2, 1, 2, 1]


# -- unsubscribes after each email ---------------------------------------------------


def sent(who: int, step: str, day: int, campaign: str = "leg-health") -> DeliveryRow:
    return DeliveryRow(who, campaign, step, "sent", utc(day))


def test_an_unsubscribe_counts_for_the_last_email_before_it():
    history = [sent(1, "welcome", 1), sent(1, "causes", 3), sent(2, "welcome", 2)]
    leaving = [Event(utc(3, 16), 1, UNSUBSCRIBE), Event(utc(2, 14), 2, UNSUBSCRIBE)]
    result = attribute_unsubscribes(leaving, history)
    assert result[0][1] is not None and result[0][1].step_key == "causes"
    assert result[1][1] is None  # left before the welcome email went


def test_leaving_table_per_thousand_newsletters_and_the_period():
    config = SimpleNamespace(
        campaigns=[
            SimpleNamespace(
                key="leg-health",
                name="Leg health",
                steps=[
                    SimpleNamespace(key="welcome", subject="Hi"),
                    SimpleNamespace(key="causes", subject="Why"),
                ],
            )
        ],
        newsletters=[SimpleNamespace(key="2026-06-travel", name="Long trips", subject="Travel")],
    )
    catalog = Catalog(config)  # type: ignore[arg-type]
    weeks = make_weeks(utc(24), CHICAGO, count=3)  # from Jun 8
    travel = "newsletter:2026-06-travel"
    deliveries = [sent(i, "welcome", 9) for i in range(1, 5)] + [
        sent(1, "2026-06-travel", 16, travel),
        sent(2, "2026-06-travel", 16, travel),
    ]
    history = [*deliveries, sent(9, "causes", 3)]  # sent before the period
    events = [
        Event(utc(10), 1, UNSUBSCRIBE),  # after welcome
        Event(utc(17), 2, UNSUBSCRIBE),  # after the newsletter
        Event(utc(11), 9, UNSUBSCRIBE),  # after an email sent before the period
        Event(utc(12), 7, UNSUBSCRIBE),  # never got anything
        Event(utc(25), 3, UNSUBSCRIBE),  # after the period
    ]
    rows = leaving_table(events, deliveries, history, weeks, catalog)
    summary = [
        (r.email.label if r.email else None, r.sent, r.unsubscribed, r.per_thousand) for r in rows
    ]
    assert summary == [
        ("Leg health, email 1: welcome", 4, 1, 250.0),
        ("Newsletter: Long trips", 2, 1, 500.0),
        (None, 0, 1, None),
    ]
    by_source = sent_per_week(deliveries, weeks, catalog)
    assert [(s.label, s.kind, v) for s, v in by_source] == [
        ("Leg health", "series", [4, 0, 0]),
        ("Long trips", "newsletter", [0, 2, 0]),
    ]


def test_unknown_campaigns_and_newsletters_fall_back_to_their_keys():
    catalog = Catalog(None)
    assert catalog.email("newsletter:2026-07-heat", "2026-07-heat").label == (
        "Newsletter: 2026-07-heat"
    )
    assert catalog.email("old-series", "step-2").label == "old-series: step-2"
    assert catalog.source("newsletter:2026-07-heat").kind == "newsletter"


def test_problems_per_week_separate_bounces_failures_and_in_doubt():
    weeks = make_weeks(utc(24), CHICAGO, count=2)
    rows = [
        DeliveryRow(1, "c", "s", "failed", utc(16), refused=True),
        DeliveryRow(2, "c", "s", "failed", utc(16)),
        DeliveryRow(3, "c", "s", "in_doubt", utc(23)),
        DeliveryRow(4, "c", "s", "sent", utc(23)),
        DeliveryRow(5, "c", "s", "skipped", utc(23)),
    ]
    assert problems_per_week(rows, [utc(23)], weeks) == {
        "bounced": [1, 1],
        "failed": [1, 0],
        "in_doubt": [0, 1],
    }


# -- chart geometry ------------------------------------------------------------------


@pytest.mark.parametrize(
    "maximum,ticks",
    [(0, [0, 1]), (3, [0, 1, 2, 3]), (7, [0, 2, 4, 6, 8]), (180, [0, 50, 100, 150, 200])],
)
def test_nice_ticks(maximum, ticks):
    assert charts.nice_ticks(maximum) == ticks


def test_stacked_bars_are_proportional_and_stack_without_gaps():
    chart = charts.bar_chart(["a", "b"], [("x", [2, 0]), ("y", [3, 1])])
    assert [t.label for t in chart.y_ticks] == ["0", "2", "4", "6"]
    height = chart.bottom - chart.top
    x_a, y_a, x_b = chart.rects
    assert x_a.h == pytest.approx(height * 2 / 6) and y_a.h == pytest.approx(height * 3 / 6)
    assert y_a.y + y_a.h == pytest.approx(x_a.y)  # y sits on x
    assert x_a.y + x_a.h == pytest.approx(chart.bottom)
    assert x_b.h == pytest.approx(height / 6) and x_b.x > x_a.x
    assert x_a.title == "a: x, 2" and x_a.color != y_a.color
    assert not chart.empty


def test_grouped_bars_sit_side_by_side():
    chart = charts.bar_chart(["a"], [("x", [4]), ("y", [2])], stacked=False)
    x, y = chart.rects
    assert y.x == pytest.approx(x.x + x.w) and y.h == pytest.approx(x.h / 2)


def test_many_weeks_thin_the_labels_and_nothing_draws_as_empty():
    labels = [f"W{i}" for i in range(52)]
    chart = charts.bar_chart(labels, [("x", [0] * 52)])
    assert chart.empty and chart.rects == []
    shown = [t.label for t in chart.x_labels]
    assert 6 <= len(shown) <= 26 and shown[0] == "W0"
    gaps = [b.pos - a.pos for a, b in zip(chart.x_labels, chart.x_labels[1:], strict=False)]
    assert min(gaps) >= 52


def test_line_and_horizontal_bars():
    line = charts.line_chart(["a", "b", "c"], [0, 5, 10], name="Active")
    ys = [y for _, y, _ in line.points]
    assert ys[0] == pytest.approx(line.bottom) and ys[2] == pytest.approx(line.top)
    assert line.line.startswith("M ") and line.area.endswith("Z")
    bars = charts.horizontal_bars(["one", "two"], [250.0, 0.0], ["t1", "t2"])
    assert [t.label for t in bars.x_labels] == ["0", "100", "200", "300"]
    assert len(bars.rects) == 1
    assert bars.rects[0].w == pytest.approx((bars.right - bars.left) * 250 / 300)
    assert [t.label for t in bars.y_ticks] == ["one", "two"]
