"""The `drip` command: a thin shell over the library (each command is a few calls)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import NoReturn

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from . import audit, db, deliveries, enrollment, subscribers
from . import stats as numbers
from .checks import check_config
from .config import Config, ConfigError, load_config
from .deliverability import dkim_check_lines, rates_lines
from .dkim import dkim_sign_for
from .locking import LockBusy, SendLock
from .outgoing import build
from .preflight import preflight
from .progress import Progress
from .render import Renderer, TemplateProblem
from .sender import Sender, Summary, count_due
from .settings import Settings, SettingsError
from .states import SubscriberStatus
from .tokens import Tokens
from .transport import TransportUnavailable, transport_from_settings
from .words import plural


class App:
    """Settings, config and database, loaded on first use by whichever command needs them."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def config(self) -> Config:
        try:
            return load_config(self.settings.config_path)
        except ConfigError as exc:
            fail(str(exc))

    @cached_property
    def engine(self) -> Engine:
        engine = db.make_engine(self.settings.database_url)
        try:
            db.ensure_schema(engine)
        except RuntimeError as exc:
            fail(str(exc))
        return engine

    @cached_property
    def tokens(self) -> Tokens:
        try:
            return Tokens(self.settings.require_secret())
        except SettingsError as exc:
            fail(str(exc))

    @cached_property
    def dkim_sign(self) -> Callable[[bytes], bytes] | None:
        """DKIM signing for every email, when DRIP_DKIM_* say so."""
        try:
            return dkim_sign_for(self.settings, self.config)
        except SettingsError as exc:
            fail(str(exc))


# html and text previews without DRIP_SECRET_KEY: links that look real and work nowhere
PREVIEW_TOKENS = Tokens("preview-only-links-are-not-valid")


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"drip: {message}", err=True)
    sys.exit(code)


def parse_now(value: str | None) -> datetime | None:
    """--now accepts ISO-8601; a time without a zone is taken as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 time like 2026-03-01T09:30 or 2026-03-01T09:30:00+01:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def clock_for(now: datetime | None) -> Callable[[], datetime]:
    return (lambda: now) if now is not None else (lambda: datetime.now(UTC))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="drip")
@click.pass_context
def main(ctx: click.Context) -> None:
    """drip: patient-education drip campaigns for clinics.

    Configuration comes from the environment: DRIP_CONFIG (campaigns.toml),
    DRIP_DATABASE_URL, DRIP_SMTP_URL or DRIP_OUTBOX, DRIP_SECRET_KEY.
    """
    ctx.obj = App(Settings.from_env())


# -- check, preview ------------------------------------------------------------------


@main.command()
@click.option("--quiet", "-q", is_flag=True, help="Print only problems.")
@click.pass_obj
def check(app: App, quiet: bool) -> None:
    """Validate campaigns.toml and every template, rendered for every answer set that
    reaches one of its branches."""
    config = app.config
    report = check_config(config)
    if not quiet:
        for e in report.emails:
            where = f"{e.campaign}/{e.step}"
            click.echo(
                f"  {where}: grade {e.grade:4.1f}, {e.words:4d} words (Flesch-Kincaid; "
                f"Dale-Chall {e.dale_chall:.1f} = {e.dale_chall_grade}), subject {e.subject!r}"
            )
            if where in report.coverage:
                click.echo(f"      {report.coverage[where]}")
    if report.problems:
        report_problems(report.problems, "nothing will be sent until they are fixed")
    for warning in dkim_check_lines(app):  # DKIM keys and DMARC alignment
        click.echo(f"warning: {warning}", err=True)
    steps = sum(len(c.steps) for c in config.campaigns)
    click.echo(
        f"ok: {config.path.name}: {plural(len(config.campaigns), 'campaign')}, "
        f"{plural(steps, 'step')}, {plural(report.profiles, 'render')} checked "
        f"({plural(report.distinct, 'distinct email')} through the "
        f"gates); grades are the hardest version of each email, the limit is grade "
        f"{config.quality.max_grade:g} Flesch-Kincaid"
    )


def report_problems(problems: list[str], consequence: str) -> None:
    """Template problems the way config problems are shown: one per line, file:line first."""
    count = len(problems)
    click.echo(
        f"drip: {plural(count, 'problem')} in the templates ({consequence}):",
        err=True,
    )
    for problem in problems:
        click.echo(f"  {problem}", err=True)
    sys.exit(1)


@main.command()
@click.argument("campaign")
@click.argument("step")
@click.option("--symptoms", default="", help="Comma-separated symptom keys.")
@click.option("--name", default="Alex", help="First name to greet (empty for none).")
@click.option(
    "--subscriber",
    "subscriber_email",
    metavar="EMAIL",
    help="Preview for this subscriber: their symptoms, name and personal links.",
)
@click.option("--format", "fmt", type=click.Choice(["html", "text", "eml"]), default="html")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to a file instead of standard output.",
)
@click.pass_obj
def preview(
    app: App,
    campaign: str,
    step: str,
    symptoms: str,
    name: str,
    subscriber_email: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Show one step as a patient would get it; `--format eml` gives the exact message
    `drip send` would send (headers, one-click unsubscribe and signed links included)."""
    config = app.config
    try:
        camp = config.campaign(campaign)
        stp = camp.step(step)
    except KeyError:
        known = ", ".join(f"{c.key}/{s.key}" for c in config.campaigns for s in c.steps)
        fail(f"no step {campaign}/{step}; known: {known}")
    # eml is the real message, so its links are signed with the real key
    tokens = app.tokens if fmt == "eml" or app.settings.secret_key else PREVIEW_TOKENS
    address, public_id, first_name = "patient@example.org", "0" * 32, name or None
    try:
        if subscriber_email:
            with Session(app.engine) as session:
                sub = subscribers.find(session, subscriber_email)
                if sub is None:
                    fail(f"no subscriber {subscriber_email}")
                address, public_id, first_name = sub.email, sub.public_id, sub.first_name
                chosen = sub.symptom_keys
        else:
            chosen = subscribers.check_symptoms(config, symptoms.split(","))
        built = build(
            config,
            Renderer(config.templates_dir),
            tokens,
            email=address,
            public_id=public_id,
            first_name=first_name,
            symptoms=chosen,
            campaign=camp,
            step=stp,
            ref="0" * 32,
            date=datetime.now(UTC),
            sign=app.dkim_sign if fmt == "eml" else None,
        )
    except (subscribers.InvalidSubscriber, TemplateProblem) as exc:
        fail(str(exc))
    for rule, what in ((camp.audience, "series"), (stp.when, "step")):
        if rule is not None and not rule.matches(chosen):
            click.echo(
                f"note: a patient with these symptoms never gets this {what} "
                f"({rule.describe()}); shown anyway",
                err=True,
            )
    if fmt == "html":
        body = built.email.html
    elif fmt == "text":
        body = f"Subject: {built.email.subject}\n\n{built.email.text}"
    else:
        body = built.envelope.data.decode("utf-8")
    if output:
        output.write_text(body, encoding="utf-8", newline="")
        click.echo(f"wrote {output}")
    else:
        click.echo(body, nl=False)


# -- send ----------------------------------------------------------------------------


@main.command()
@click.option(
    "--now", "now_text", metavar="ISO-8601", help="Simulate the clock (previews, tests, backfills)."
)
@click.option("--dry-run", is_flag=True, help="List what would go; send and record nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N emails this run.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for another running `drip send` to finish.",
)
@click.pass_obj
def send(app: App, now_text: str | None, dry_run: bool, limit: int | None, wait: float) -> None:
    """Send every email that is due. Safe to run from cron every few minutes."""
    now = parse_now(now_text)
    config = app.config
    # the same renders and gates as `drip check`, less the slow reading grade, when
    # the files changed since they last passed; the sender reuses the renderer
    renderer = Renderer(config.templates_dir)
    problems = preflight(config, app.engine, renderer)
    if problems:
        report_problems(problems, "see `drip check`; nothing was sent")
    try:
        transport = (
            None
            if dry_run
            else transport_from_settings(app.settings.smtp_url, app.settings.outbox_dir)
        )
    except (TransportUnavailable, ValueError) as exc:
        fail(str(exc))
    clock = clock_for(now)
    try:
        with (
            SendLock(app.engine, wait=wait),
            contextlib.closing(transport) if transport else contextlib.nullcontext(),
            Progress.for_terminal() or contextlib.nullcontext() as progress,
        ):
            if progress is not None:
                progress.total = count_due(app.engine, clock())
            sender = Sender(
                config,
                app.engine,
                transport,
                app.tokens,
                clock=clock,
                renderer=renderer,
                dry_run=dry_run,
                limit=limit,
                progress=progress.advance if progress is not None else None,
                sign=app.dkim_sign,
                separate_process=True,
            )
            summary = sender.run()
    except LockBusy as exc:
        click.echo(f"drip send: {exc}; exiting (nothing sent by this run)")
        return
    for line in summary.planned:
        click.echo(f"  {line}")
    click.echo(f"drip send: {summary.line(dry_run)}")
    sys.exit(send_exit_code(summary))


def send_exit_code(summary: Summary) -> int:
    """0: fine; 2: the run stopped early (relay unreachable, login refused, the same
    refusal again and again); 3: some email could not be built or sent because of
    an error in drip or a template (see `drip deliveries --status failed`)."""
    if summary.stopped and not summary.limit_reached:
        return 2
    if summary.errors:
        return 3
    return 0


# -- subscribers ---------------------------------------------------------------------


@main.group("subscribers")
def subscribers_group() -> None:
    """Add, list and inspect subscribers."""


@subscribers_group.command("add")
@click.argument("email")
@click.option("--symptoms", default="", help="Comma-separated symptom keys.")
@click.option("--name", help="First name.")
@click.option("--timezone", help="IANA time zone, e.g. America/Chicago (default: the clinic's).")
@click.option(
    "--confirmed",
    is_flag=True,
    help="Active at once (consent obtained elsewhere); else pending confirmation.",
)
@click.option("--now", "now_text", metavar="ISO-8601", help="Simulate the clock.")
@click.pass_obj
def subscribers_add(
    app: App,
    email: str,
    symptoms: str,
    name: str | None,
    timezone: str | None,
    confirmed: bool,
    now_text: str | None,
) -> None:
    """Add one subscriber with their symptoms."""
    now = parse_now(now_text) or datetime.now(UTC)
    config = app.config
    with Session(app.engine, expire_on_commit=False) as session:
        try:
            sub = subscribers.create(
                session,
                config,
                email=email,
                symptoms=symptoms.split(","),
                now=now,
                first_name=name,
                timezone=timezone,
                confirmed=confirmed,
            )
        except subscribers.InvalidSubscriber as exc:
            fail(str(exc))
        enrollment.sync_subscriber(session, config, sub, now)
        session.commit()
        campaigns = enrollment.campaign_keys(session, sub.id)
    click.echo(f"added {sub.email} ({sub.status}); campaigns: {', '.join(campaigns) or 'none'}")


@subscribers_group.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in SubscriberStatus]),
    help="Only subscribers with this status.",
)
@click.pass_obj
def subscribers_list(app: App, status: str | None) -> None:
    """One line per subscriber: email, status, symptoms."""
    with Session(app.engine) as session:
        for sub in subscribers.listing(session, status):
            click.echo(
                f"{sub.email}\t{sub.status}\t{sub.timezone}\t{','.join(sorted(sub.symptom_keys))}"
            )


@subscribers_group.command("show")
@click.argument("email")
@click.pass_obj
def subscribers_show(app: App, email: str) -> None:
    """Everything drip holds about one subscriber, consent record included."""
    with Session(app.engine) as session:
        try:
            sub = subscribers.find(session, email)
        except subscribers.InvalidSubscriber as exc:
            fail(str(exc))
        if sub is None:
            fail(f"no subscriber {email}")
        found = subscribers.profile(session, sub, datetime.now(UTC))
        session.commit()
        for name, value in found.fields():
            click.echo(f"{name:22} {value or '-'}")
        click.echo(f"{'symptoms':22} {', '.join(sorted(sub.symptom_keys)) or '-'}")
        for e in found.enrollments:
            click.echo(
                f"campaign {e.campaign_key}: {e.state}, started {e.started_at:%Y-%m-%d}"
                f", next {e.next_step_key or '-'} at {e.next_due_at or '-'}"
            )
        for d in found.deliveries:
            click.echo(
                f"  {d.campaign_key}/{d.step_key}: {d.status} "
                f"{d.sent_at or d.updated_at:%Y-%m-%d %H:%M}" + (f" ({d.error})" if d.error else "")
            )


# -- deliveries, stats, db -----------------------------------------------------------


@main.command("deliveries")
@click.option("--in-doubt", is_flag=True, help="Only deliveries interrupted mid-send.")
@click.option("--resolve", metavar="REF", help="Resolve an in-doubt delivery by its ref.")
@click.option(
    "--as",
    "resolution",
    type=click.Choice([r.value for r in deliveries.Resolution]),
    help="With --resolve: it did arrive (sent) or send it again (resend).",
)
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def deliveries_cmd(
    app: App, in_doubt: bool, resolve: str | None, resolution: str | None, limit: int
) -> None:
    """List recent deliveries, or resolve an in-doubt one."""
    with Session(app.engine) as session:
        if resolve:
            if not resolution:
                fail("--resolve needs --as sent or --as resend")
            try:
                deliveries.resolve(
                    session,
                    app.config,
                    resolve,
                    deliveries.Resolution(resolution),
                    datetime.now(UTC),
                )
            except deliveries.NotInDoubt as exc:
                fail(str(exc))
            session.commit()
            click.echo(f"resolved {resolve} as {resolution}")
            return
        for listed in deliveries.recent(session, limit, in_doubt=in_doubt):
            d = listed.delivery
            click.echo(
                f"{d.ref}  {d.status:9} {d.campaign_key}/{d.step_key}  {listed.email}  "
                f"{(d.sent_at or d.updated_at):%Y-%m-%d %H:%M}"
                + (f"  {d.error}" if d.error else "")
            )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def stats(app: App, as_json: bool) -> None:
    """Plain numbers: subscribers by status, emails by campaign, step and status."""
    with Session(app.engine) as session:
        found = numbers.gather(session, app.config)
    if as_json:
        click.echo(json.dumps(found.as_json(), indent=2))
        return
    people = found.subscribers
    click.echo(
        "subscribers: " + (", ".join(f"{n} {s}" for s, n in sorted(people.items())) or "none")
    )
    columns = numbers.STATUS_COLUMNS
    click.echo(f"{'step':40}" + "".join(f"{s:>10}" for s in columns))
    for key in found.ordered_steps():
        row = found.steps[key]
        click.echo(f"{key:40}" + "".join(f"{row.get(s, 0):>10}" for s in columns))
    for line in rates_lines(found.rates, found.order):
        click.echo(line, err=line.startswith("warning"))
    if found.failure_reasons:
        click.echo("why emails failed:")
        for reason, count in found.failure_reasons:
            click.echo(f"{count:>8}  {reason}")


@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.pass_obj
def db_upgrade(app: App) -> None:
    """Apply pending migrations (also done automatically on first use)."""
    engine = db.make_engine(app.settings.database_url)
    db.upgrade(engine)
    click.echo(f"database at revision {db.current_revision(engine)}")


@main.command("audit")
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def audit_log(app: App, limit: int) -> None:
    """The newest audit log entries."""
    with Session(app.engine) as session:
        for shown in audit.newest(session, limit):
            entry = shown.entry
            click.echo(
                f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor:12} {entry.action:24} "
                f"{shown.who}  {entry.detail}"
            )


# serve, run, snippet, demo and `subscribers purge-pending` live with the web side
from .deliverability import register as _register_deliverability  # noqa: E402
from .web.commands import register as _register_web  # noqa: E402

_register_web(main)
_register_deliverability(main)  # bounces, suppress, dkim
from .reports.command import register as _register_report  # noqa: E402

_register_report(main)  # report
