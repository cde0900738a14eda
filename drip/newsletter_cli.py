"""`drip newsletter list | preview | test | cancel`. Registered on the main group by cli.py.

Sending is `drip send`'s job (newsletters go through the same pipeline as the
series); these commands show, try and stop newsletters.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import newsletters, subscribers
from .config import Config, Newsletter
from .message import new_ref
from .models import Delivery
from .outgoing import Outgoing, build
from .preview_cli import preview_options, say_if_never_sent, show_preview
from .render import Renderer, TemplateProblem
from .states import DeliveryStatus
from .tokens import Tokens
from .transport import transport_from_settings

# `preview` and `test` link to no real subscriber: their links lead to a page
# saying there is nothing to change
PREVIEW_ID = "newsletter-preview"
PREVIEW_SECRET = "drip-newsletter-preview-only-never-a-real-secret"


def _fail(message: str) -> None:
    click.echo(f"drip: {message}", err=True)
    sys.exit(1)


def _find(config: Config, key: str) -> Newsletter:
    try:
        return config.newsletter(key)
    except KeyError:
        known = ", ".join(n.key for n in config.newsletters) or "none in campaigns.toml"
        _fail(f"no newsletter {key!r}; known: {known}")
        raise  # unreachable: _fail exits


def _build(
    app: Any, newsletter: Newsletter, symptoms: str, to: str, subject_prefix: str = ""
) -> Outgoing:
    """The newsletter for one made-up patient, built exactly as `drip send` builds it."""
    config = app.config
    secret = app.settings.secret_key or PREVIEW_SECRET
    step, campaign = newsletter.step, newsletter.campaign
    if subject_prefix:
        step = replace(step, subject=subject_prefix + step.subject)
        campaign = replace(campaign, steps=(step,))
    try:
        chosen = subscribers.check_symptoms(config, [s for s in symptoms.split(",") if s])
        return build(
            config,
            Renderer(config.templates_dir),
            Tokens(secret),
            email=to,
            public_id=PREVIEW_ID,
            first_name=None,
            symptoms=frozenset(chosen),
            campaign=campaign,
            step=step,
            ref=new_ref(),
            date=datetime.now(UTC),
            sign=app.dkim_sign if subject_prefix else None,
        )
    except (subscribers.InvalidSubscriber, TemplateProblem, ValueError) as exc:
        _fail(str(exc))
        raise  # unreachable


@click.group("newsletter")
def newsletter_group() -> None:
    """One-off emails to all or part of the list ([[newsletter]] in campaigns.toml)."""


@newsletter_group.command("list")
@click.option("--now", "now_text", metavar="ISO-8601", help="Simulate the clock.")
@click.pass_obj
def list_newsletters(app: Any, now_text: str | None) -> None:
    """Each newsletter: key, name, state, audience size now, sent and remaining."""
    from .clock import parse_now

    now = parse_now(now_text) or datetime.now(UTC)
    with Session(app.engine) as session:
        rows = newsletters.standings(session, app.config, now)
    if not rows:
        click.echo("no newsletters in campaigns.toml")
        return
    click.echo(
        f"{'key':24} {'state':10} {'audience':>8} {'sent':>6} {'remaining':>9}  name / send_at"
    )
    for r in rows:
        when = f"{r.newsletter.send_at:%Y-%m-%d %H:%M} local" if r.newsletter.send_at else "-"
        click.echo(
            f"{r.newsletter.key:24} {r.state:10} {r.audience:>8} {r.sent:>6} {r.remaining:>9}  "
            f"{r.newsletter.name} / {when}"
        )


@newsletter_group.command("preview")
@click.argument("key")
@preview_options
@click.pass_obj
def preview(app: Any, key: str, symptoms: str, fmt: str, output: Path | None) -> None:
    """The newsletter exactly as a patient with these symptoms would get it."""
    newsletter = _find(app.config, key)
    made = _build(app, newsletter, symptoms, "patient@example.org")
    chosen = subscribers.check_symptoms(app.config, symptoms.split(","))  # _build checked them
    say_if_never_sent([(newsletter.audience, "newsletter")], chosen)
    show_preview(made, fmt, output)


@newsletter_group.command("test")
@click.argument("key")
@click.option("--to", "to", required=True, help="Where to send the test (the marketer).")
@click.option("--symptoms", default="", help="Comma-separated symptom keys.")
@click.pass_obj
def test_send(app: Any, key: str, to: str, symptoms: str) -> None:
    """Send one real copy to ADDRESS, subject prefixed [TEST]; nothing is recorded."""
    newsletter = _find(app.config, key)
    try:
        address = subscribers.normalize_email(to)
    except subscribers.InvalidSubscriber as exc:
        _fail(str(exc))
    made = _build(app, newsletter, symptoms, address, subject_prefix="[TEST] ")
    try:
        transport = transport_from_settings(app.settings.smtp_url, app.settings.outbox_dir)
        try:
            transport.send(made.envelope)
        finally:
            transport.close()
    except Exception as exc:  # one clear line, whatever the relay said
        _fail(f"the test was not sent: {exc}")
    click.echo(f"sent a test of {key} to {address}: {made.email.subject!r} (not recorded)")


@newsletter_group.command("cancel")
@click.argument("key")
@click.option("--now", "now_text", metavar="ISO-8601", help="Simulate the clock.")
@click.pass_obj
def cancel(app: Any, key: str, now_text: str | None) -> None:
    """Stop every copy of newsletter KEY not yet sent (for good: keys are never reused)."""
    from .clock import parse_now

    now = parse_now(now_text) or datetime.now(UTC)
    with Session(app.engine) as session:
        known = key in {n.key for n in app.config.newsletters} or session.scalar(
            select(Delivery.id).where(Delivery.campaign_key == "newsletter:" + key).limit(1)
        )
        if not known:
            _find(app.config, key)
        changed = newsletters.cancel(session, key, now)
        session.commit()
        sent = session.scalar(
            select(func.count()).where(
                Delivery.campaign_key == "newsletter:" + key,
                Delivery.status == DeliveryStatus.SENT,
            )
        )
    if changed:
        click.echo(f"cancelled {key}: no further copies will go ({sent} already sent)")
    else:
        click.echo(f"{key} was already cancelled ({sent} sent before that)")


def register(main: click.Group) -> None:
    main.add_command(newsletter_group)
