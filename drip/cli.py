"""The `drip` command: a thin shell over the library (each command is a few calls).

Each command imports the library modules it calls inside its own body: `drip
--help` and a missing setting answer before SQLAlchemy is loaded, and cron's
`drip send` with nothing due loads no Jinja, MJML or MIME code
(tests/test_cron_path.py).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from . import __version__, quiet
from .clock import parse_now
from .config import NEWSLETTER_PREFIX, Config, ConfigError, load_config
from .preview_cli import preview_options, say_if_never_sent, show_preview
from .settings import Settings, SettingsError
from .states import Resolution, SubscriberStatus
from .summary import Summary
from .words import plural

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from .tokens import Tokens


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
        from . import db

        engine = db.make_engine(self.settings.database_url)
        try:
            db.ensure_schema(engine)
        except RuntimeError as exc:
            fail(str(exc))
        return engine

    def session(self, **options: Any) -> Session:
        """A new ORM session on the database (the caller closes it: `with`)."""
        from sqlalchemy.orm import Session

        return Session(self.engine, **options)

    @cached_property
    def tokens(self) -> Tokens:
        from .tokens import Tokens

        try:
            return Tokens(self.settings.require_secret(), self.settings.old_secret_keys)
        except SettingsError as exc:
            fail(str(exc))

    @cached_property
    def dkim_sign(self) -> Callable[[bytes], bytes] | None:
        """DKIM signing for every email, when DRIP_DKIM_* say so."""
        if not (self.settings.dkim_key or self.settings.dkim_ed25519_key):
            return None  # no need to load the crypto library
        from .dkim import dkim_sign_for

        try:
            return dkim_sign_for(self.settings, self.config)
        except SettingsError as exc:
            fail(str(exc))


# html and text previews without DRIP_SECRET_KEY: links that look real and work nowhere
PREVIEW_SECRET = "preview-only-links-are-not-valid"


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"drip: {message}", err=True)
    sys.exit(code)


def clock_for(now: datetime | None) -> Callable[[], datetime]:
    return (lambda: now) if now is not None else (lambda: datetime.now(UTC))


class DripGroup(click.Group):
    """Runs a command; database and file-system troubles end in one line, exit 3."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except OSError as exc:
            from . import dberrors

            fail(dberrors.describe_os_error(exc), dberrors.EXIT_DATABASE)
        except Exception as exc:
            # a command that never loaded SQLAlchemy cannot have a database error
            errors = sys.modules.get("sqlalchemy.exc")
            if errors is None or not isinstance(exc, errors.SQLAlchemyError):
                raise
            from . import dberrors

            url = ctx.obj.settings.database_url if isinstance(ctx.obj, App) else ""
            fail(dberrors.describe(exc, url), dberrors.EXIT_DATABASE)


@click.group(cls=DripGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, package_name="drip")
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
    from .checks import check_config
    from .deliverability import dkim_check_lines

    config = app.config
    report = check_config(config)
    if not quiet:
        for e in report.emails:
            where = f"{e.campaign}/{e.step}"
            name = "newsletter" if e.campaign.startswith(NEWSLETTER_PREFIX) else e.campaign
            click.echo(
                f"  {name}/{e.step}: grade {e.grade:4.1f}, {e.words:4d} words (Flesch-Kincaid; "
                f"Dale-Chall {e.dale_chall:.1f} = {e.dale_chall_grade}), subject {e.subject!r}"
            )
            if where in report.coverage:
                click.echo(f"      {report.coverage[where]}")
    if report.problems:
        report_problems(report.problems, "nothing will be sent until they are fixed")
    for warning in dkim_check_lines(app):  # DKIM keys and DMARC alignment
        click.echo(f"warning: {warning}", err=True)
    steps = sum(len(c.steps) for c in config.campaigns)
    news = f"{plural(len(config.newsletters), 'newsletter')}, " if config.newsletters else ""
    click.echo(
        f"ok: {config.path.name}: {plural(len(config.campaigns), 'campaign')}, "
        f"{plural(steps, 'step')}, {news}{plural(report.profiles, 'render')} checked "
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
@preview_options
@click.option("--name", default="Alex", help="First name to greet (empty for none).")
@click.option(
    "--subscriber",
    "subscriber_email",
    metavar="EMAIL",
    help="Preview for this subscriber: their symptoms, name and personal links.",
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
    from . import subscribers
    from .outgoing import build
    from .render import Renderer, TemplateProblem
    from .tokens import Tokens

    config = app.config
    try:
        camp = config.campaign(campaign)
        stp = camp.step(step)
    except KeyError:
        known = ", ".join(f"{c.key}/{s.key}" for c in config.campaigns for s in c.steps)
        fail(f"no step {campaign}/{step}; known: {known}")
    # eml is the real message, so its links are signed with the real key
    tokens = app.tokens if fmt == "eml" or app.settings.secret_key else Tokens(PREVIEW_SECRET)
    address, public_id, first_name = "patient@example.org", "0" * 32, name or None
    try:
        if subscriber_email:
            with app.session() as session:
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
    say_if_never_sent(((camp.audience, "series"), (stp.when, "step")), chosen)
    show_preview(built, fmt, output)


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
    from .transport import TransportUnavailable, transport_from_settings

    now = parse_now(now_text)
    tokens = app.tokens  # settings first: a missing key is one line, before any work
    url = app.settings.database_url
    if not dry_run:
        # cron's usual case: the last run found nothing due before a moment still ahead,
        # and nothing has been written since (drip/quiet.py); no database layer needed
        in_doubt = quiet.quiet_summary(url, app.config, now or datetime.now(UTC))
        if in_doubt is not None:
            click.echo(f"drip send: {Summary(in_doubt_total=in_doubt).line()}")
            return
        quiet.forget(url)
    try:
        transport = (
            None
            if dry_run
            else transport_from_settings(app.settings.smtp_url, app.settings.outbox_dir)
        )
    except (TransportUnavailable, ValueError) as exc:
        fail(str(exc))
    config = app.config
    # the database layer, once the settings and campaigns.toml are known to be good
    from .locking import LockBusy, SendLock
    from .preflight import passed_before, preflight
    from .progress import Progress
    from .sender import Sender, count_due

    # the same renders and gates as `drip check`, less the slow reading grade, when
    # the files changed since they last passed; the sender reuses the check's renderer.
    # Unchanged files (cron's usual case) cost a hash: no renderer is even made
    renderer = None
    if not passed_before(config, app.engine):
        from .render import Renderer

        renderer = Renderer(config.templates_dir)
        problems = preflight(config, app.engine, renderer)
        if problems:
            report_problems(problems, "see `drip check`; nothing was sent")
    if not dry_run:
        send_queued_mail(app, now)
    clock = clock_for(now)
    try:
        with (
            SendLock(app.engine, wait=wait) as lock,
            contextlib.closing(transport) if transport else contextlib.nullcontext(),
            Progress.for_terminal() or contextlib.nullcontext() as progress,
        ):
            if progress is not None:
                progress.total = count_due(app.engine, config, clock())
            sender = Sender(
                config,
                app.engine,
                transport,
                tokens,
                clock=clock,
                renderer=renderer,
                dry_run=dry_run,
                limit=limit,
                progress=progress.advance if progress is not None else None,
                sign=app.dkim_sign,
                separate_process=True,
                run_id=lock.run_id,
            )
            summary = sender.run()
    except LockBusy as exc:
        click.echo(f"drip send: {exc}; exiting (nothing sent by this run)")
        return
    if not (dry_run or summary.stopped or summary.errors):
        remember_if_idle(app, clock())
    for line in summary.planned:
        click.echo(f"  {line}")
    click.echo(f"drip send: {summary.line(dry_run)}")
    sys.exit(send_exit_code(summary))


def remember_if_idle(app: App, now: datetime) -> None:
    """After a full run on an SQLite file: when nothing can fall due before some
    later moment, write that down for the next cron runs (drip/quiet.py)."""
    from .next_work import in_doubt_count, next_work

    url = app.settings.database_url
    if quiet.database_file(url) is None:
        return
    app.engine.dispose()  # the files as every other process sees them
    state = quiet.settled_state(url)
    if state is None:
        return
    with app.session() as session:  # read after the state: a change since voids it
        until = next_work(session, app.config, now)
        in_doubt = in_doubt_count(session)
    app.engine.dispose()
    if until is not None:
        quiet.remember(url, app.config, now, until, in_doubt, state)


def send_exit_code(summary: Summary) -> int:
    """0: fine; 2: the run stopped early (relay unreachable, login refused, the same
    refusal again and again); 4: some email could not be built or sent because of
    an error in drip or a template (3 is a database trouble, see dberrors)."""
    if summary.stopped and not summary.limit_reached:
        return 2
    if summary.errors:
        return 4
    return 0


def send_queued_mail(app: App, now: datetime | None) -> None:
    """The web pages' queued emails (confirmations first: a person is waiting), then
    the purges: signups never confirmed within a week, and the answers of people who
    left ([privacy] keep_after_unsubscribe). So cron alone keeps both promises.

    Separate from the Sender: its own transport and claims (drip/mailqueue.py),
    no send lock needed, so a `drip serve` worker and cron can both drain it.
    """
    from . import rights
    from .mailqueue import LimitsError, MailLimits, deliver_queued
    from .transport import TransportUnavailable, transport_from_settings

    try:
        limits = MailLimits.from_env()
        transport = transport_from_settings(app.settings.smtp_url, app.settings.outbox_dir)
    except (LimitsError, TransportUnavailable, ValueError) as exc:
        fail(str(exc))
    try:
        counts = deliver_queued(app.engine, transport, clock_for(now), limits=limits)
    finally:
        transport.close()
    if counts.sent or counts.failed or counts.waiting or counts.in_doubt_new or counts.stopped:
        click.echo(f"drip send: queued emails: {counts.line()}")
    with app.session() as session:
        moment = now or datetime.now(UTC)
        unconfirmed, discarded = rights.purge_pending(session, moment)
        # [privacy] keep_after_unsubscribe: answers and names of people who left
        retired = rights.purge_expired(session, app.config, moment, "drip send")
        session.commit()
    if unconfirmed or discarded:
        click.echo(f"drip send: {rights.purged_line(unconfirmed, discarded)}")
    if retired:
        click.echo(f"drip send: purged the answers and names of {retired} people who left")


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
    from . import enrollment, subscribers

    now = parse_now(now_text) or datetime.now(UTC)
    config = app.config
    with app.session(expire_on_commit=False) as session:
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
    from sqlalchemy import select

    from . import audit
    from .models import Subscriber

    with app.session() as session:
        query = select(Subscriber).order_by(Subscriber.id)
        if status:
            query = query.where(Subscriber.status == status)
        shown = 0
        for sub in session.scalars(query):
            shown += 1
            click.echo(
                f"{sub.email}\t{sub.status}\t{sub.timezone}\t{','.join(sorted(sub.symptom_keys))}"
            )
        audit.record(session, datetime.now(UTC), "cli", "subscribers.listed", None, count=shown)
        session.commit()


@subscribers_group.command("show")
@click.argument("email")
@click.pass_obj
def subscribers_show(app: App, email: str) -> None:
    """Everything drip holds about one subscriber, consent record included."""
    from . import subscribers

    with app.session() as session:
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
        click.echo(f"{'newsletters':22} {'off (opted out)' if sub.newsletters_opt_out else 'on'}")
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


@subscribers_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--consent", help="Consent basis for rows without a consent column value.")
@click.option(
    "--confirmed",
    is_flag=True,
    help="Active at once (consent on record); else pending, sent a confirmation email.",
)
@click.option("--dry-run", is_flag=True, help="Check the file and count; change nothing.")
@click.option("--now", "now_text", metavar="ISO-8601", help="Simulate the clock.")
@click.pass_obj
def subscribers_import(
    app: App, file: Path, consent: str | None, confirmed: bool, dry_run: bool, now_text: str | None
) -> None:
    """Import a list from CSV: email, first_name, timezone, symptoms (a;b), consent."""
    from .importer import ImportProblem, import_csv

    now = parse_now(now_text) or datetime.now(UTC)
    config, engine = app.config, app.engine
    size = file.stat().st_size if file.is_file() else 0
    bar = None
    if sys.stdout.isatty() and size:
        # rows are not known before reading: count the lines first (a quick pass)
        bar = click.progressbar(length=max(_count_lines(file) - 1, 1), label="importing")
    done = 0

    def progress(rows: int) -> None:
        nonlocal done
        if bar is not None:
            bar.update(rows - done)
        done = rows

    try:
        if bar is not None:
            bar.__enter__()
        report = import_csv(
            engine,
            config,
            file,
            now=now,
            consent=consent,
            confirmed=confirmed,
            dry_run=dry_run,
            progress=progress,
        )
    except ImportProblem as exc:
        fail(str(exc))
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    for bad in report.bad:
        click.echo(f"{file}:{bad.line}: {bad.reason}", err=True)
    click.echo(f"drip import: {report.line(dry_run)}")
    if report.bad:
        sys.exit(1)  # the good rows are in; the bad ones are listed above


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


@subscribers_group.command("export")
@click.argument("email", required=False)
@click.option("--all", "everyone", is_flag=True, help="Every subscriber, one row each.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv", "jsonl"]),
    help="json for one person (default); csv (default) or jsonl with --all.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to a file instead of standard output.",
)
@click.pass_obj
def subscribers_export(
    app: App, email: str | None, everyone: bool, fmt: str | None, output: Path | None
) -> None:
    """Everything drip holds about one person as JSON (a data access request), or
    every subscriber as CSV or JSON lines (--all). Audited."""
    from . import rights, subscribers

    if bool(email) == everyone:
        fail("give one EMAIL, or --all (not both)")
    now = datetime.now(UTC)
    out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        with app.session() as session:
            if email:
                if fmt not in (None, "json"):
                    fail("one person's data is exported as JSON (--format json)")
                try:
                    data = rights.export_one(session, app.config, email, now, "cli")
                except rights.NotFound:
                    fail(f"no subscriber {email}")
                except subscribers.InvalidSubscriber as exc:
                    fail(str(exc))
                session.commit()
                out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
            else:
                if fmt == "json":
                    fail("--all writes csv or jsonl")
                write_rows(out, rights.export_rows(session, now, "cli"), fmt or "csv")
    finally:
        if output:
            out.close()
    if output:
        click.echo(f"wrote {output}", err=True)


def write_rows(out: Any, rows: Any, fmt: str) -> None:
    import csv

    from .rights import EXPORT_COLUMNS

    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


@subscribers_group.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask (scripts); required when not on a terminal.")
@click.pass_obj
def subscribers_erase(app: App, email: str, yes: bool) -> None:
    """Delete everything about one person (a right-to-erasure request)."""
    from . import rights, subscribers

    with app.session() as session:
        try:
            if subscribers.find(session, email) is None:
                fail(f"no subscriber {email}")
        except subscribers.InvalidSubscriber as exc:
            fail(str(exc))
        if not yes:
            if not sys.stdin.isatty():
                fail("erasing cannot be undone: add --yes to confirm when not on a terminal")
            click.confirm(
                f"Erase {email} and everything drip holds about them? This cannot be undone",
                abort=True,
            )
        done = rights.erase(session, email, datetime.now(UTC), "cli")
        session.commit()
    kept = (
        "; their address stays on the suppression list as a hash, since they had asked "
        "for no more email"
        if done.suppressed
        else ""
    )
    click.echo(f"erased {email}{kept}")


@subscribers_group.command("unsubscribe")
@click.argument("email")
@click.option("--now", "now_text", metavar="ISO-8601", help="Simulate the clock.")
@click.pass_obj
def subscribers_unsubscribe(app: App, email: str, now_text: str | None) -> None:
    """Unsubscribe someone who asked by phone or letter."""
    from . import rights, subscribers

    now = parse_now(now_text) or datetime.now(UTC)
    with app.session() as session:
        try:
            result = rights.unsubscribe(session, app.config, email, now, "cli", "request")
        except rights.NotFound:
            fail(f"no subscriber {email}")
        except subscribers.InvalidSubscriber as exc:
            fail(str(exc))
        session.commit()
    click.echo(f"{email}: " + ("unsubscribed" if result == "done" else "already unsubscribed"))


# -- deliveries, stats, db -----------------------------------------------------------


@main.command("deliveries")
@click.option("--in-doubt", is_flag=True, help="Only deliveries interrupted mid-send.")
@click.option("--resolve", metavar="REF", help="Resolve an in-doubt delivery by its ref.")
@click.option(
    "--as",
    "resolution",
    type=click.Choice([r.value for r in Resolution]),
    help="With --resolve: it did arrive (sent) or send it again (resend).",
)
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def deliveries_cmd(
    app: App, in_doubt: bool, resolve: str | None, resolution: str | None, limit: int
) -> None:
    """List recent deliveries, or resolve an in-doubt one."""
    from . import audit, deliveries

    with app.session() as session:
        if resolve:
            if not resolution:
                fail("--resolve needs --as sent or --as resend")
            try:
                deliveries.resolve(
                    session,
                    app.config,
                    resolve,
                    Resolution(resolution),
                    datetime.now(UTC),
                )
            except deliveries.NotInDoubt as exc:
                fail(str(exc))
            session.commit()
            click.echo(f"resolved {resolve} as {resolution}")
            return
        found = deliveries.recent(session, limit, in_doubt=in_doubt)
        for listed in found:
            d = listed.delivery
            click.echo(
                f"{d.ref}  {d.status:9} {d.campaign_key}/{d.step_key}  {listed.email}  "
                f"{(d.sent_at or d.updated_at):%Y-%m-%d %H:%M}"
                + (f"  {d.error}" if d.error else "")
            )
        audit.record(session, datetime.now(UTC), "cli", "deliveries.listed", None, count=len(found))
        session.commit()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def stats(app: App, as_json: bool) -> None:
    """Plain numbers: subscribers by status, emails by campaign, step and status."""
    from . import stats as numbers
    from .deliverability import rates_lines

    with app.session() as session:
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
    from . import db

    engine = db.make_engine(app.settings.database_url)
    db.upgrade(engine)
    click.echo(f"database at revision {db.current_revision(engine)}")


@main.command("audit")
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def audit_log(app: App, limit: int) -> None:
    """The newest audit log entries."""
    from . import audit

    with app.session() as session:
        for shown in audit.newest(session, limit):
            entry = shown.entry
            click.echo(
                f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor:12} {entry.action:24} "
                f"{shown.who}  {entry.detail}"
            )


# Commands in other modules are imported only when they run, so cron's `drip send`
# never loads Flask, the crypto library or the report's charts.
from .lazy import LazyCommand  # noqa: E402

for _name, _target, _help in (
    ("serve", "drip.web.commands:serve", "Serve the patient web pages (waitress)."),
    ("run", "drip.web.commands:run", "The web app plus `drip send` every minute."),
    ("snippet", "drip.web.commands:snippet", "An HTML signup form for the clinic's site."),
    ("demo", "drip.web.commands:demo", "Try drip on this computer, mail catcher included."),
    ("bounces", "drip.deliverability:bounces_group", "Read bounces and complaints."),
    ("suppress", "drip.deliverability:suppress_group", "Addresses drip never emails."),
    ("dkim", "drip.deliverability:dkim_group", "DKIM keys for the clinic's email."),
    ("report", "drip.reports.command:report", "An HTML report with charts for marketers."),
    ("newsletter", "drip.newsletter_cli:newsletter_group", "One-off newsletters."),
):
    main.add_command(LazyCommand(_name, _target, _help))
subscribers_group.add_command(
    LazyCommand(
        "purge-pending",
        "drip.web.commands:purge_pending",
        "Delete signups never confirmed within DAYS.",
    )
)


def entry() -> None:
    """The `drip` command, as the console script and `python -m drip` run it.

    It ends the process without the interpreter's teardown, which frees the heap
    object by object: after a big send that took 0.2-0.3 s of the run's wall time,
    and cron pays it every few minutes. The exit handlers still run (logging,
    multiprocessing, a coverage run's) and the streams are flushed first. A command
    that left a thread of its own running ends the ordinary way, which waits for it.
    """
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:  # pragma: no cover - click's standalone mode always exits
        code = 0
    code = 0 if code is None else code
    if not isinstance(code, int) or any(
        thread.is_alive() and not thread.daemon
        for thread in threading.enumerate()
        if thread is not threading.main_thread()
    ):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):  # click.echo flushes; anything else may not
        try:
            if stream is not None:  # None: started with that descriptor closed
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: what Python's own exit reports
            code = code or 120
    atexit._run_exitfuncs()
    os._exit(code)
