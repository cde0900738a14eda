"""The transactional emails the web side queues itself (not the Sender's drip).

- confirm: the double opt-in link. It echoes nothing the form received (no name,
  no symptoms), so a bot that signs up a stranger can make it say nothing.
- already: to an address that is already subscribed, a link to its preferences,
  so the signup page can answer the same way whether or not an address is known.
- fresh: a new preferences link, asked for from an old one (the old link no
  longer shows answers; the new one goes only to the address's owner).

Each renders `templates/emails/<name>.mjml` through the clinic's layout when that
file exists, else a plain built-in message (web/templates/standalone/). None
carries List-Unsubscribe: transactional mail is exempt from one-click (Gmail,
Yahoo rules). They are rendered in the request and queued (drip/mailqueue.py);
a worker sends them.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from .. import audit, mailqueue
from ..config import Step
from ..message import Envelope, compose, new_ref
from ..models import PENDING, QueuedMail, Subscriber
from ..render import RenderedEmail, TemplateProblem, subscriber_context
from ..tokens import CONFIRM, links
from .standalone import render as render_standalone

if TYPE_CHECKING:  # for types only: services imports the worker at run time
    from .services import Services

log = logging.getLogger("drip.web")

CONFIRM_STEP = Step(
    key="confirm",
    subject="Please confirm your email address",
    preheader="One click to start your emails from {{ clinic.name }}",
    template="confirm",
    delay=timedelta(0),
)
ALREADY_STEP = Step(
    key="already",
    subject="You are already signed up",
    preheader="Change your topics or pause at any time",
    template="already_subscribed",
    delay=timedelta(0),
)

FRESH_STEP = Step(
    key="fresh",
    subject="Your link to change your emails",
    preheader="A new link, as you asked",
    template="fresh_link",
    delay=timedelta(0),
)

_BUILTIN = {
    "confirm": (
        "Please confirm that you want emails from {clinic}.",
        "Yes, start my emails",
        "confirm_url",
        "If you did not sign up, ignore this email. Nothing more will be sent.",
    ),
    "already": (
        "Someone (we hope you) asked to sign up this email address, but it already gets "
        "our emails. You can change your topics or pause them here.",
        "Change my topics",
        "preferences_url",
        "If this was not you, you can ignore this email.",
    ),
    "fresh": (
        "Someone (we hope you) asked for a new link to change your topics, pause or stop "
        "your emails from {clinic}. Here it is.",
        "Change my emails",
        "preferences_url",
        "If this was not you, you can ignore this email. Nothing was changed.",
    ),
}


def confirm_url(services: Services, sub: Subscriber, change: str | None = None) -> str:
    payload = f"{sub.public_id}:{change}" if change else sub.public_id
    token = services.tokens.make(CONFIRM, payload)
    return f"{services.config.clinic.base_url}/confirm/{token}"


def render(
    services: Services, sub: Subscriber, step: Step, change: str | None = None
) -> RenderedEmail:
    config = services.config
    context = subscriber_context(
        config,
        first_name=None,  # echo nothing the form received
        symptoms=set(),
        links=links(services.tokens, config.clinic.base_url, sub.public_id),
    )
    context["confirm_url"] = confirm_url(services, sub, change)
    if (config.templates_dir / f"{step.template}.mjml").is_file():
        try:
            return services.renderer.render(step, context)
        except TemplateProblem:
            log.exception("the %s email template failed; sending the built-in text", step.key)
    return _builtin(services, step, context)


def _builtin(services: Services, step: Step, context: dict[str, object]) -> RenderedEmail:
    clinic = services.config.clinic
    lead, button, url_key, tail = _BUILTIN[step.key]
    lead = lead.format(clinic=clinic.name)
    url = str(context[url_key])
    address = [ln.strip() for ln in clinic.postal_address.splitlines() if ln.strip()]
    subject = step.subject
    preheader = step.preheader.replace("{{ clinic.name }}", clinic.name)
    signature = "\n".join([clinic.name, *address])
    text = "\n\n".join(["Hello,", lead, f"{button}: {url}", tail, signature])
    body = render_standalone(
        "builtin_email.html",
        subject=subject,
        lead=lead,
        url=url,
        button=button,
        tail=tail,
        signature=[clinic.name, *address],
    )
    return RenderedEmail(subject, preheader, body, text + "\n")


def build(
    services: Services, sub: Subscriber, step: Step, change: str | None = None
) -> Envelope | None:
    """The email as bytes, ready for the queue; None (logged) if it cannot be built."""
    clinic = services.config.clinic
    try:
        email = render(services, sub, step, change)
        data = compose(
            clinic,
            sub.email,
            email,
            date=services.now(),
            ref=new_ref(),
            headers={"Auto-Submitted": "auto-generated"},
            sign=services.sign,
        )
    except Exception:
        log.exception("could not build the %s email for subscriber %s", step.key, sub.id)
        return None
    return Envelope(clinic.from_email, sub.email, data)


def queue(
    services: Services,
    session: Session,
    sub: Subscriber,
    step: Step,
    change: str | None = None,
) -> bool:
    """Render one email and add it to the queue in the caller's transaction.

    False when the mailbox had its share for today (mail bombing) or the email
    could not be built; the caller shows the same page either way.
    """
    now = services.now()
    if not mailqueue.mailbox_allows(session, sub.email, now, services.options.mail_limits):
        audit.record(session, now, services.actor, f"email.{step.key}.mailbox_limit", sub.id)
        return False
    envelope = build(services, sub, step, change)
    if envelope is None:
        return False
    mailqueue.enqueue(session, kind=step.key, envelope=envelope, now=now, subscriber_id=sub.id)
    return True


def rehearse(services: Services, session: Session, address: str) -> None:
    """The work of queue() for an address that gets no email (suppressed, bounced),
    thrown away: the answer then takes as long as for anyone else, so its timing
    does not tell a stranger which addresses drip knows or has suppressed."""
    mailqueue.mailbox_allows(session, address, services.now(), services.options.mail_limits)
    stand_in = Subscriber(public_id=secrets.token_hex(16), email=address, id=0)
    build(services, stand_in, CONFIRM_STEP)


def render_queued(services: Services) -> mailqueue.Render:
    """Builds queued rows that came without their bytes (an import's confirmations)."""

    def build_row(session: Session, row: QueuedMail) -> Envelope | None:
        sub = session.get(Subscriber, row.subscriber_id) if row.subscriber_id else None
        if sub is None or row.kind != CONFIRM_STEP.key or sub.status != PENDING:
            return None
        sub.last_confirmation_sent_at = services.now()
        return build(services, sub, CONFIRM_STEP)

    return build_row
