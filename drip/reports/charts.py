"""Chart geometry for inline SVG: pure functions from numbers to shapes.

The template (templates/report.html) only draws what these return, so every
coordinate is tested here. Colours are the Okabe-Ito palette, which people with
colour-blindness can tell apart, and each series also has a legend and a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # green
    "#CC79A7",  # pink
    "#56B4E9",  # sky blue
    "#D55E00",  # vermilion
    "#8C6D1F",  # brown (Okabe-Ito's yellow is unreadable on white paper)
    "#666666",  # grey
)
WIDTH, HEIGHT = 760, 230
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 14, 34


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    color: str
    title: str  # shown on hover, read by screen readers


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class LegendItem:
    label: str
    color: str


@dataclass
class Chart:
    width: int
    height: int
    left: float
    top: float
    right: float  # x of the plot's right edge
    bottom: float  # y of the plot's baseline
    rects: list[Rect] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_labels: list[Tick] = field(default_factory=list)
    legend: list[LegendItem] = field(default_factory=list)
    line: str = ""  # SVG path data of a line chart
    area: str = ""  # the same, closed down to the baseline
    points: list[tuple[float, float, str]] = field(default_factory=list)  # x, y, title
    empty: bool = False  # nothing to draw: the template says so instead


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `maximum`: steps of 1, 2 or 5 x 10^n."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(step, 1.0)  # counts of people and emails: no half ticks
    return [i * step for i in range(math.ceil(maximum / step) + 1)]


def _fmt(value: float) -> str:
    return f"{value:,.0f}"


def _frame(width: int, height: int, left: float = LEFT) -> Chart:
    return Chart(width, height, left, TOP, width - RIGHT, height - BOTTOM)


def _x_labels(chart: Chart, labels: Sequence[str], centers: Sequence[float]) -> None:
    """Every label if they fit, else every 2nd, 4th... so they never overlap."""
    room = (chart.right - chart.left) / max(len(labels), 1)
    every = 1
    while room * every < 52:  # about 7 characters of 11px text
        every *= 2
    chart.x_labels = [Tick(centers[i], label) for i, label in enumerate(labels) if i % every == 0]


def _y_axis(chart: Chart, maximum: float) -> float:
    """Set the y ticks; return the scale's top value."""
    ticks = nice_ticks(maximum)
    top = ticks[-1]
    chart.y_ticks = [Tick(_y(chart, t, top), _fmt(t)) for t in ticks]
    return top


def _y(chart: Chart, value: float, top: float) -> float:
    return chart.bottom - (chart.bottom - chart.top) * value / top


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    stacked: bool = True,
    colors: Sequence[str] = PALETTE,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart:
    """Vertical bars, one slot per label; series stacked or side by side."""
    chart = _frame(width, height)
    chart.legend = [LegendItem(name, colors[i % len(colors)]) for i, (name, _) in enumerate(series)]
    n = len(labels)
    if stacked:
        maximum = max((sum(s[1][i] for s in series) for i in range(n)), default=0)
    else:
        maximum = max((v for _, values in series for v in values), default=0)
    chart.empty = maximum <= 0
    top = _y_axis(chart, maximum)
    slot = (chart.right - chart.left) / max(n, 1)
    gap = min(slot * 0.25, 12)
    group = slot - gap
    centers = [chart.left + slot * i + slot / 2 for i in range(n)]
    _x_labels(chart, labels, centers)
    for i in range(n):
        x0 = chart.left + slot * i + gap / 2
        base = 0.0
        for k, (name, values) in enumerate(series):
            value = values[i]
            if value <= 0:
                continue
            color = colors[k % len(colors)]
            title = f"{labels[i]}: {name}, {_fmt(value)}"
            if stacked:
                y_top, y_base = _y(chart, base + value, top), _y(chart, base, top)
                chart.rects.append(Rect(x0, y_top, group, y_base - y_top, color, title))
                base += value
            else:
                w = group / len(series)
                y_top = _y(chart, value, top)
                chart.rects.append(Rect(x0 + w * k, y_top, w, chart.bottom - y_top, color, title))
    return chart


def line_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    name: str,
    color: str = PALETTE[0],
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart:
    """A line with a light area under it; one point per label."""
    chart = _frame(width, height)
    chart.legend = [LegendItem(name, color)]
    n = len(values)
    chart.empty = n == 0
    top = _y_axis(chart, max(values, default=0))
    slot = (chart.right - chart.left) / max(n, 1)
    xs = [chart.left + slot * i + slot / 2 for i in range(n)]
    _x_labels(chart, labels, xs)
    chart.points = [
        (x, _y(chart, v, top), f"{labels[i]}: {_fmt(v)}")
        for i, (x, v) in enumerate(zip(xs, values, strict=True))
    ]
    if chart.points:
        chart.line = "M " + " L ".join(f"{x:.1f},{y:.1f}" for x, y, _ in chart.points)
        chart.area = (
            f"{chart.line} L {xs[-1]:.1f},{chart.bottom:.1f} L {xs[0]:.1f},{chart.bottom:.1f} Z"
        )
    return chart


def horizontal_bars(
    labels: Sequence[str],
    values: Sequence[float],
    titles: Sequence[str],
    *,
    color: str = PALETTE[5],
    width: int = WIDTH,
    row: int = 26,
    label_width: int = 300,
) -> Chart:
    """One bar per row, labels on the left: for rates per email."""
    height = TOP + row * max(len(values), 1) + BOTTOM
    chart = _frame(width, height, left=label_width)
    maximum = max(values, default=0)
    chart.empty = maximum <= 0
    ticks = nice_ticks(maximum)
    top = ticks[-1]
    span = chart.right - chart.left
    # the value axis runs along the bottom here
    chart.x_labels = [Tick(chart.left + span * t / top, _fmt(t)) for t in ticks]
    for i, (value, title) in enumerate(zip(values, titles, strict=True)):
        y = chart.top + row * i
        chart.y_ticks.append(Tick(y + row / 2, labels[i]))
        if value > 0:
            chart.rects.append(Rect(chart.left, y + 4, span * value / top, row - 8, color, title))
    return chart
