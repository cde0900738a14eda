"""The report page: numbers from series.py, shapes from charts.py, one Jinja template.

The result is one HTML file with inline CSS and inline SVG: no JavaScript, no
fonts, images or styles from anywhere else, so it opens offline, prints, and can
be attached to an email. It holds counts only, never a name or an address.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..config import Config
from ..rates import COMPLAINT_WARNING, Rates, total
from ..words import plural
from . import charts, series
from .data import Records
from .series import NEWSLETTER, Catalog, Weeks

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Table:
    caption: str
    headers: list[str]
    rows: list[list[str]]
    foot: list[str] | None = None  # a totals row
    text_columns: int = 1  # the first columns hold words (left-aligned), the rest numbers


@dataclass
class Figure:
    id: str
    title: str
    explain: str  # what the chart means, in a sentence or two
    desc: str  # the chart's <desc>: what it shows, in words
    kind: str  # bars, line, hbars
    chart: charts.Chart
    table: Table
    table_open: bool = False  # the table is the point (show it without a click)
    notes: list[str] = field(default_factory=list)


@dataclass
class Headline:
    label: str
    value: str
    note: str = ""


@dataclass
class Page:
    clinic: str
    period: str
    generated: str
    headlines: list[Headline]
    figures: list[Figure]
    extra_tables: list[Table]
    warnings: list[str]
    version: str


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(value: float) -> str:
    return f"{value:.2%}"


def _week_rows(weeks: Weeks) -> list[str]:
    dates = weeks.dates()
    return [d if weeks.complete(i) else f"{d} (to date)" for i, d in enumerate(dates)]


def build(records: Records, weeks: Weeks, config: Config | None, now: datetime) -> Page:
    """Everything the template shows, computed from the records."""
    catalog = Catalog(config)
    tz = weeks.tz
    labels, week_rows = weeks.labels(), _week_rows(weeks)
    first, last = weeks.dates()[0], f"{weeks.end.astimezone(tz):%Y-%m-%d %H:%M}"
    span = f"{len(weeks)} week{'s' * (len(weeks) != 1)} from {first} to {last}"
    figures: list[Figure] = []

    # 1. signups and confirmations
    signups, confirmations = series.signups_and_confirmations(records.events, weeks)
    figures.append(
        Figure(
            "signups",
            "Signups and confirmations per week",
            "A signup is a new subscriber (the web form, the command line or an import) or "
            "someone who signs up again after leaving. A confirmation is someone who clicked "
            "the link in the confirmation email, or was added as already confirmed. Only "
            "confirmed people get emails.",
            f"Bar chart, two bars per week over {span}: {plural(sum(signups), 'signup')} and "
            f"{plural(sum(confirmations), 'confirmation')} in all.",
            "bars",
            charts.bar_chart(
                labels, [("Signups", signups), ("Confirmations", confirmations)], stacked=False
            ),
            Table(
                "Signups and confirmations per week",
                ["Week of", "Signups", "Confirmations"],
                [
                    [w, _n(s), _n(c)]
                    for w, s, c in zip(week_rows, signups, confirmations, strict=True)
                ],
                ["Total", _n(sum(signups)), _n(sum(confirmations))],
            ),
        )
    )

    # 2. active subscribers
    closes = weeks.closes()
    active = series.active_at(records.events, closes)
    figures.append(
        Figure(
            "active",
            "Active subscribers over time",
            "How many people could get emails at the end of each week: confirmed, and not "
            "unsubscribed, bounced or reported as spam. drip rebuilds this from its audit log "
            "(each confirmation, unsubscribe, bounce, complaint and restored bounce, with its "
            "time) and the dates on each subscriber's record. People who paused their emails "
            "count as active.",
            f"Line chart of active subscribers at the end of each week over {span}: "
            f"{_n(active[0])} after the first week, {_n(active[-1])} at the end.",
            "line",
            charts.line_chart(labels, active, name="Active subscribers"),
            Table(
                "Active subscribers at the end of each week",
                ["Week of", "Active at the end of the week"],
                [[w, _n(a)] for w, a in zip(week_rows, active, strict=True)],
            ),
        )
    )

    # 3. emails sent, by series and newsletter
    sent = series.sent_per_week(records.deliveries, weeks, catalog)
    names = [("Newsletter: " if s.kind == NEWSLETTER else "Series: ") + s.label for s, _ in sent]
    totals = [sum(values[i] for _, values in sent) for i in range(len(weeks))]
    figures.append(
        Figure(
            "sent",
            "Emails sent per week, by series and newsletter",
            "Each bar is the emails the mail server accepted that week, stacked by the series "
            "or newsletter they belong to. Failed, skipped and held emails are not counted "
            "here (see Failures and bounces below).",
            f"Stacked bar chart of emails sent per week over {span}, "
            f"{_n(sum(totals))} in all: "
            + (
                "; ".join(f"{n}: {_n(sum(v))}" for n, (_, v) in zip(names, sent, strict=True))
                or "none"
            )
            + ".",
            "bars",
            charts.bar_chart(labels, [(n, v) for n, (_, v) in zip(names, sent, strict=True)]),
            Table(
                "Emails sent per week",
                ["Week of", *names, "Total"],
                [[w, *(_n(v[i]) for _, v in sent), _n(totals[i])] for i, w in enumerate(week_rows)],
                ["Total", *(_n(sum(v)) for _, v in sent), _n(sum(totals))],
            ),
        )
    )

    # 4. unsubscribes after each email
    leaving = series.leaving_table(
        records.events, records.deliveries, records.history, weeks, catalog
    )
    rated = [r for r in leaving if r.email is not None]
    before_any = sum(r.unsubscribed for r in leaving if r.email is None)
    leave_fig = Figure(
        "unsubscribes",
        "Unsubscribes after each email",
        "Which email makes people leave: each unsubscribe counts for the last email drip sent "
        "that person before they left. The bars show unsubscribes per 1,000 of that email "
        "sent in this period, so emails sent to many and to few people compare fairly. With "
        "only a few hundred sent, one or two people make a big difference.",
        "Horizontal bar chart, unsubscribes per 1,000 emails sent, for "
        f"{plural(len(rated), 'email')} over {span}: "
        + (
            "; ".join(
                f"{r.email.label}: {r.unsubscribed} of {r.sent} ({_rate(r.per_thousand)} per 1,000)"
                for r in rated
                if r.email is not None
            )
            or "none sent"
        )
        + ".",
        "hbars",
        charts.horizontal_bars(
            _short_labels([r.email for r in rated if r.email is not None]),
            [r.per_thousand or 0.0 for r in rated],
            [
                f"{r.email.label}: {r.unsubscribed} unsubscribes after {r.sent} sent"
                for r in rated
                if r.email is not None
            ],
        ),
        Table(
            "Unsubscribes after each email",
            ["Email", "Subject", "Sent", "Unsubscribes after it", "Per 1,000 sent"],
            [
                [
                    r.email.label if r.email else "Before any email (e.g. from the welcome page)",
                    r.email.subject if r.email else "",
                    _n(r.sent) if r.email else "",
                    _n(r.unsubscribed),
                    _rate(r.per_thousand) if r.email else "",
                ]
                for r in leaving
            ],
            [
                "Total",
                "",
                _n(sum(r.sent for r in rated)),
                _n(sum(r.unsubscribed for r in leaving)),
                _rate(
                    1000 * sum(r.unsubscribed for r in rated) / sum(r.sent for r in rated)
                    if sum(r.sent for r in rated)
                    else None
                ),
            ],
            text_columns=2,
        ),
        table_open=True,
    )
    if before_any:
        leave_fig.notes.append(
            f"{before_any} people unsubscribed in this period before drip had sent them any email."
        )
    figures.append(leave_fig)

    # 5. failures and bounces
    problems = series.problems_per_week(records.deliveries, records.later_bounces, weeks)
    kinds = [
        ("Bounced", problems["bounced"]),
        ("Failed (other reasons)", problems["failed"]),
        ("In doubt", problems["in_doubt"]),
    ]
    figures.append(
        Figure(
            "failures",
            "Failures and bounces per week",
            "Bounced: the receiving server said the address does not exist, when drip sent "
            "the email or later in a bounce message; drip stops emailing that address. Failed: "
            "any other permanent failure, or a temporary one that went on too long. In doubt: "
            "a send was cut off before the server answered; drip holds it until someone "
            "checks (drip deliveries --in-doubt).",
            f"Stacked bar chart of delivery problems per week over {span}: "
            + "; ".join(f"{name}: {_n(sum(v))}" for name, v in kinds)
            + ".",
            "bars",
            charts.bar_chart(
                labels, kinds, colors=(charts.PALETTE[5], charts.PALETTE[1], charts.PALETTE[7])
            ),
            Table(
                "Failures and bounces per week",
                ["Week of", *(name for name, _ in kinds)],
                [[w, *(_n(v[i]) for _, v in kinds)] for i, w in enumerate(week_rows)],
                ["Total", *(_n(sum(v)) for _, v in kinds)],
            ),
        )
    )

    rates_table, warnings = _rates_table(records, weeks, catalog)
    everything = total(records.rates)
    headlines = [
        Headline("Active subscribers", _n(active[-1]), f"on {weeks.end.astimezone(tz):%b %-d}"),
        Headline("Signups", _n(sum(signups)), f"{_n(sum(confirmations))} confirmed"),
        Headline("Emails sent", _n(sum(totals))),
        Headline(
            "Unsubscribes",
            _n(sum(r.unsubscribed for r in leaving)),
            "see which emails below",
        ),
        Headline("Bounce rate", _pct(everything.bounce_rate), f"{_n(everything.bounced)} bounced"),
        Headline(
            "Complaint rate",
            _pct(everything.complaint_rate),
            f"{_n(everything.complained)} marked as spam",
        ),
    ]
    return Page(
        clinic=config.clinic.name if config else "drip",
        period=span,
        generated=f"{now.astimezone(tz):%Y-%m-%d %H:%M} ({tz.key})",
        headlines=headlines,
        figures=figures,
        extra_tables=[rates_table],
        warnings=warnings,
        version=_version(),
    )


def _short_labels(emails: list[series.Email]) -> list[str]:
    """Chart labels: the series name only when there is more than one series."""
    several = len({e.source.key for e in emails if e.source.kind != NEWSLETTER}) > 1
    labels = []
    for e in emails:
        if e.source.kind == NEWSLETTER:
            labels.append(e.label)
        else:
            short = e.label.rpartition(", email ")[2] if ", email " in e.label else e.label
            labels.append(f"{e.source.label}: {short}" if several else f"Email {short}")
    return labels


def _version() -> str:
    try:
        return version("drip")
    except PackageNotFoundError:  # running from a source tree
        return "dev"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _rates_table(records: Records, weeks: Weeks, catalog: Catalog) -> tuple[Table, list[str]]:
    """Per email: sent, bounces, complaints (drip/rates.py) and other failures."""
    statuses = series.status_counts(records.deliveries, weeks)
    keys = {tuple(k.split("/", 1)) for k in records.rates} | set(statuses)
    rows: list[list[str]] = []
    warnings: list[str] = []
    for key in sorted(keys, key=lambda k: catalog.email(k[0], k[1]).order):
        campaign, step = key
        email = catalog.email(campaign, step)
        r = records.rates.get(f"{campaign}/{step}", Rates())
        counts = statuses.get((campaign, step), Counter())
        other = counts.get("failed", 0) - counts.get("refused", 0)
        if not (r.sent or r.bounced or r.complained or other or counts.get("in_doubt")):
            continue  # e.g. only skipped for everyone in this period
        rows.append(
            [
                email.label,
                _n(r.sent),
                _n(r.bounced),
                _pct(r.bounce_rate),
                _n(r.complained),
                _pct(r.complaint_rate),
                _n(other),
                _n(counts.get("in_doubt", 0)),
            ]
        )
        if r.complaint_rate > COMPLAINT_WARNING:
            warnings.append(
                f"Complaints for {email.label} are {_pct(r.complaint_rate)} of emails sent, over "
                f"{COMPLAINT_WARNING:.1%}. Gmail and Yahoo act at 0.3%: check the signup consent, "
                "how often you send, and whether the emails match what people asked for."
            )
    everything = total(records.rates)
    if everything.complaint_rate > COMPLAINT_WARNING and len(keys) > 1:
        warnings.append(
            f"Complaints for all email are {_pct(everything.complaint_rate)} of emails sent, "
            f"over {COMPLAINT_WARNING:.1%}."
        )
    table = Table(
        "Bounces, complaints and failures per email",
        [
            "Email",
            "Sent",
            "Bounced",
            "Bounce rate",
            "Spam complaints",
            "Complaint rate",
            "Failed (other)",
            "In doubt",
        ],
        rows,
        [
            "All email",
            _n(everything.sent),
            _n(everything.bounced),
            _pct(everything.bounce_rate),
            _n(everything.complained),
            _pct(everything.complaint_rate),
            _n(sum(c.get("failed", 0) - c.get("refused", 0) for c in statuses.values())),
            _n(sum(c.get("in_doubt", 0) for c in statuses.values())),
        ],
    )
    return table, warnings


def render(page: Page) -> str:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html").render(page=page)


def report_html(records: Records, weeks: Weeks, config: Config | None, now: datetime) -> str:
    return render(build(records, weeks, config, now))


def clinic_zone(config: Config | None) -> ZoneInfo:
    return ZoneInfo(config.clinic.timezone if config else "UTC")
