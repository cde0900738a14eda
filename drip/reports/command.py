"""`drip report -o report.html`: thin; the work is in data.py, series.py and page.py."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy.orm import Session

from ..words import plural
from . import data, page
from .series import make_weeks


def _fail(message: str) -> NoReturn:
    click.echo(f"drip: {message}", err=True)
    sys.exit(1)


@click.command("report")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML report.",
)
@click.option(
    "--since",
    metavar="YYYY-MM-DD",
    help="Start with the week holding this date (default: the last --weeks weeks).",
)
@click.option(
    "--weeks",
    type=click.IntRange(1, 520),
    help="How many weeks (default 12, or every week from --since to now).",
)
@click.option(
    "--now", "now_text", metavar="ISO-8601", help="Simulate the clock (the report ends here)."
)
@click.pass_obj
def report(
    app: Any, output: Path, since: str | None, weeks: int | None, now_text: str | None
) -> None:
    """Write a self-contained HTML report with charts: signups, active subscribers,
    emails sent, unsubscribes after each email, failures and bounces."""
    from ..clock import parse_now

    now = parse_now(now_text) or datetime.now(UTC)
    config = app.config
    tz = page.clinic_zone(config)
    start = None
    if since is not None:
        try:
            start = datetime.combine(date.fromisoformat(since), time(0), tzinfo=tz)
        except ValueError:
            _fail(f"--since {since!r} is not a date like 2026-03-01")
    span = make_weeks(now, tz, since=start, count=weeks)
    with Session(app.engine) as session:
        records = data.load(session, span)
    html = page.report_html(records, span, config, now)
    try:
        _write(output, html)
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"wrote {output} ({plural(len(span), 'week')} from {span.dates()[0]})")


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a half-written report is never left behind."""
    directory = path.resolve().parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def register(main: click.Group) -> None:
    main.add_command(report)
