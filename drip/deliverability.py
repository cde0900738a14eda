"""CLI commands for deliverability: `drip bounces`, `drip suppress`, `drip dkim`.

Thin: each command parses its options and calls drip/bounces.py, feedback.py,
suppression.py or dkim.py. Registered on the main group by cli.py.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource
from sqlalchemy.orm import Session

from . import bounces, dkim, suppression
from .rates import COMPLAINT_WARNING, Rates, total
from .settings import SettingsError
from .subscribers import InvalidSubscriber

ACTOR = "drip bounces"


def _fail(message: str) -> NoReturn:
    click.echo(f"drip: {message}", err=True)
    sys.exit(1)


def _now(value: str | None) -> datetime:
    from .clock import parse_now

    return parse_now(value) or datetime.now(UTC)


# -- bounces ---------------------------------------------------------------------------


@click.group("bounces")
def bounces_group() -> None:
    """Read bounces and complaints that came back after sending."""


@bounces_group.command("process")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option(
    "--imap",
    "imap_url",
    metavar="URL",
    envvar="DRIP_IMAP_URL",
    help="Read an IMAP folder instead: imaps://user:pass@host/INBOX (or DRIP_IMAP_URL).",
)
@click.option("--now", "now_text", metavar="ISO-8601", help="Simulate the clock.")
@click.option("--quiet", "-q", is_flag=True, help="Print only changes, warnings and the total.")
@click.pass_obj
def bounces_process(
    app: Any, path: Path | None, imap_url: str | None, now_text: str | None, quiet: bool
) -> None:
    """Process returned mail from an mbox file, a Maildir folder or IMAP (cron-safe)."""
    # a PATH on the command line wins over DRIP_IMAP_URL in the environment; with both
    # on the command line, which one was meant is unclear
    source_of_imap = click.get_current_context().get_parameter_source("imap_url")
    if path is not None and source_of_imap is ParameterSource.ENVIRONMENT:
        imap_url = None
    if (path is None) == (imap_url is None):
        _fail("give an mbox file or Maildir folder, or --imap URL (one of them)")
    now = _now(now_text)
    config, engine = app.config, app.engine
    counts: Counter[str] = Counter()
    source: bounces.ImapSource | None = None
    try:
        if imap_url:
            source = bounces.ImapSource(
                bounces.ImapSettings.from_url(imap_url, os.environ.get("DRIP_IMAP_PASSWORD"))
            )
            items: Iterable[bounces.Item] = source.items()
        else:
            assert path is not None
            items = bounces.read_path(path)
        with Session(engine, expire_on_commit=False) as session:
            for item in items:
                outcomes = bounces.process(session, config, item.raw, now, ACTOR)
                session.commit()
                if source is not None:
                    source.done(item)  # only after the decision is committed
                for outcome in outcomes:
                    counts[outcome.action] += 1
                    quiet_ok = outcome.action in ("duplicate", "skipped", "delayed", "ignored")
                    if outcome.warning:
                        click.echo(f"warning: {item.label}: {outcome.line}", err=True)
                    elif not (quiet and quiet_ok):
                        click.echo(f"{item.label}: {outcome.line}")
    except bounces.SourceError as exc:
        _fail(str(exc))
    finally:
        if source is not None:
            source.close()
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
    click.echo(f"drip bounces: {summary or 'nothing to process'}")


# -- suppress --------------------------------------------------------------------------


@click.group("suppress")
def suppress_group() -> None:
    """The suppression list: addresses drip never emails."""


@suppress_group.command("list")
@click.pass_obj
def suppress_list(app: Any) -> None:
    """One line per suppressed address: address, reason, since when."""
    with Session(app.engine) as session:
        rows = suppression.entries(session)
    for entry in rows:
        click.echo(f"{entry.address}\t{entry.reason}\t{entry.created_at:%Y-%m-%d %H:%M}")
    click.echo(f"{len(rows)} suppressed", err=True)


@suppress_group.command("add")
@click.argument("email")
@click.option("--reason", default="manual", show_default=True, help="Why (kept with the entry).")
@click.option("--now", "now_text", metavar="ISO-8601", help="Simulate the clock.")
@click.pass_obj
def suppress_add(app: Any, email: str, reason: str, now_text: str | None) -> None:
    """Never email EMAIL again (whether or not it is a subscriber)."""
    with Session(app.engine) as session:
        try:
            added = suppression.add(session, email, reason, _now(now_text), "cli")
        except InvalidSubscriber as exc:
            _fail(str(exc))
        session.commit()
    click.echo(f"suppressed {email}" if added else f"{email} was already suppressed")


@suppress_group.command("remove")
@click.argument("email")
@click.option("--now", "now_text", metavar="ISO-8601", help="Simulate the clock.")
@click.pass_obj
def suppress_remove(app: Any, email: str, now_text: str | None) -> None:
    """Undo a mistaken suppression: drip may email EMAIL again."""
    now = _now(now_text)
    with Session(app.engine) as session:
        try:
            removed = suppression.remove(session, app.config, email, now, "cli")
        except InvalidSubscriber as exc:
            _fail(str(exc))
        session.commit()
    if removed is None:
        _fail(f"{email} is not on the suppression list")
    assert removed is not None
    click.echo(
        f"warning: removed {email} from the suppression list (it was there for "
        f"{removed.reason!r}); drip may email this address again",
        err=True,
    )
    if removed.restored:
        click.echo(f"the subscriber is {removed.subscriber_status} again", err=True)
    elif removed.subscriber_status:
        click.echo(
            f"the subscriber stays {removed.subscriber_status}: they get email again only "
            "if they sign up again",
            err=True,
        )


# -- dkim ------------------------------------------------------------------------------


@click.group("dkim")
def dkim_group() -> None:
    """DKIM keys for signing the clinic's email."""


@dkim_group.command("keygen")
@click.option("--selector", required=True, help="The DKIM selector, e.g. drip2026.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the private key (default: dkim-SELECTOR.pem or .ed25519).",
)
@click.option("--bits", default=2048, show_default=True, type=click.IntRange(1024, 4096))
@click.option("--ed25519", "ed25519", is_flag=True, help="An ed25519 key instead of RSA.")
@click.option("--domain", help="The signing domain (default: DRIP_DKIM_DOMAIN, else From's).")
@click.pass_obj
def dkim_keygen(
    app: Any, selector: str, out: Path | None, bits: int, ed25519: bool, domain: str | None
) -> None:
    """Write a new private key and print the DNS TXT record to publish."""
    if not selector.replace("-", "").replace("_", "").isalnum():
        _fail("--selector takes letters, digits, - and _ only")
    domain = domain or app.settings.dkim_domain or _from_domain(app)
    out = out or Path(f"dkim-{selector}.{'ed25519' if ed25519 else 'pem'}")
    key = dkim.generate_ed25519() if ed25519 else dkim.generate_rsa(bits)
    try:
        dkim.write_private(out, key.private)
    except FileExistsError:
        _fail(f"{out} exists; drip never overwrites a key (choose another --out)")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}")
    kind = "ed25519" if ed25519 else f"RSA {bits}-bit"
    var, sel = (
        ("DRIP_DKIM_ED25519_KEY", "DRIP_DKIM_ED25519_SELECTOR")
        if ed25519
        else ("DRIP_DKIM_KEY", "DRIP_DKIM_SELECTOR")
    )
    click.echo(f"wrote the {kind} private key to {out} (readable by you only; keep it secret)")
    click.echo("\nPublish this DNS TXT record, then set the variables below:\n")
    click.echo(dkim.dns_record(selector, domain, key.dns_value))
    click.echo(f"\n{var}={out.resolve()}\n{sel}={selector}")


def _from_domain(app: Any) -> str:
    try:
        from .config import load_config

        return load_config(app.settings.config_path).clinic.sender_domain
    except Exception:  # no campaigns.toml yet: keygen still works
        return "YOUR-DOMAIN.example"


def dkim_check_lines(app: Any) -> list[str]:
    """Warnings for `drip check`; exits with the problem when a key cannot be used."""
    clinic = app.config.clinic
    try:
        dkim.DkimSigner.from_settings(app.settings, clinic.sender_domain)
    except SettingsError as exc:
        _fail(str(exc))
    bounce_domain = clinic.bounce_address.rpartition("@")[2]
    return dkim.alignment_warnings(app.settings, clinic.sender_domain, bounce_domain)


def register(main: click.Group) -> None:
    main.add_command(bounces_group)
    main.add_command(suppress_group)
    main.add_command(dkim_group)


# -- stats -----------------------------------------------------------------------------


def rates_lines(table: dict[str, Rates], order: dict[str, int]) -> list[str]:
    """The bounce and complaint table of `drip stats`, then warnings."""
    if not table:
        return []
    lines = [
        f"\n{'bounces and complaints':40}{'sent':>10}{'bounced':>10}{'rate':>8}"
        f"{'complaints':>12}{'rate':>8}"
    ]
    everything = total(table)
    for key in [*sorted(table, key=lambda k: order.get(k, 1_000_000)), "all"]:
        r = table.get(key, everything)
        lines.append(
            f"{key:40}{r.sent:>10}{r.bounced:>10}{r.bounce_rate:>8.2%}"
            f"{r.complained:>12}{r.complaint_rate:>8.2%}"
        )
    for key, r in [*table.items(), ("all email", everything)]:
        if r.complaint_rate > COMPLAINT_WARNING:
            lines.append(
                f"warning: complaints for {key} are {r.complaint_rate:.2%} of emails sent, over "
                f"{COMPLAINT_WARNING:.1%} (Gmail and Yahoo act at 0.3%): check the signup "
                "consent, how often you send and whether the emails match what people asked for"
            )
    return lines
