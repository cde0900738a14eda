"""The pages: signup, confirmation, one-click unsubscribe, preferences.

URL shapes `/u/<token>` and `/p/<token>` are fixed: every email the engine has
ever sent carries them (tokens.links).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from .. import audit
from ..models import ACTIVE, PENDING, UNSUBSCRIBED, Subscriber
from ..tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, TokenError
from . import actions, flows, mailer
from .advice import Advice, advice_for, every_advice
from .consent import PRIVACY_NOTICE, consent_text, consent_version
from .forms import PAUSE_WEEKS, SignupForm, read_choice, read_signup, read_topics
from .guard import csrf_ok, request_origin
from .pages import message_page, services
from .ratelimit import RateLimiter
from .services import Services
from .timezones import COMMON, all_zones, label

log = logging.getLogger("drip.web")
bp = Blueprint("drip", __name__)

MAX_TOKEN = 200
Page = str | tuple[str, int] | Response

DONE = {
    "answers": "Your answers are saved.",
    "paused": "Your emails are paused.",
    "resumed": "Your emails are back on.",
    "left": "You will get no more emails from that series.",
    "joined": "That series will go on where you left off.",
    "news_off": "You will get no more newsletters. Your series go on.",
    "news_on": "Newsletters are back on.",
}


def client_ip() -> str:
    """The client's address; X-Forwarded-For only counts with DRIP_TRUSTED_PROXIES set."""
    return request.remote_addr or "unknown"


def user_agent() -> str:
    return request.headers.get("User-Agent", "")


# -- pages -----------------------------------------------------------------------------


@bp.get("/")
def home() -> Response:
    # the signup form; the demo starts at its mail catcher instead (demo/pages.py)
    return redirect(url_for(current_app.config.get("HOME_ENDPOINT", "drip.subscribe")))


@bp.get("/favicon.ico")
def favicon() -> tuple[str, int]:
    return "", 204


@bp.get("/healthz")
def health() -> tuple[str, int, dict[str, str]]:
    return "ok\n", 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/privacy")
def privacy() -> str:
    config = services().config
    return render_template(
        "privacy.html",
        notice=PRIVACY_NOTICE,
        consent=consent_text(config),
        version=consent_version(config),
    )


def signup_page(form: SignupForm | None, status: int = 200, notice: str = "") -> tuple[str, int]:
    """The form; shown again after a problem, with the advice for ticked signs first."""
    config = services().config
    form = form or SignupForm(timezone=config.clinic.timezone)
    return (
        render_template(
            "subscribe.html",
            form=form,
            advice=advice_for(config, form.red_flags),
            flag_advice={a.key: a for a in every_advice(config)},
            symptoms=config.symptoms,
            red_flags=config.red_flags,
            common_zones=[(z, label(z)) for z in COMMON],
            all_zones=[(z, label(z)) for z in all_zones() if z not in COMMON],
            default_zone=form.timezone or config.clinic.timezone,
            consent=consent_text(config),
            version=consent_version(config),
            privacy=PRIVACY_NOTICE,
            notice=notice,
        ),
        status,
    )


@bp.route("/subscribe", methods=["GET", "POST"])
def subscribe() -> Page:
    if request.method != "POST":
        return signup_page(None)
    svc = services()
    config = svc.config
    form = read_signup(request.form, config, consent_version(config))
    origin = request_origin()
    from_embed = origin is not None and origin in svc.options.embed_origins
    if not from_embed and not csrf_ok():
        # nothing stored or sent: the person sees their answers and presses once more
        return signup_page(form, 400, "Please check your answers and press “Sign me up” again.")
    advice = advice_for(config, form.red_flags)
    if form.honeypot:
        log.info("signup honeypot filled in; pretending it worked")
        return render_template("check_inbox.html", advice=advice)
    limits: dict[str, RateLimiter] = current_app.extensions["drip.limits"]
    if not limits["ip"].hit(client_ip()):
        log.warning("signup rate limit reached for an IP address")
        return message_page(
            "Too many sign-ups from your network",
            "Please wait an hour and try again, or call the clinic.",
            429,
            advice=advice,
        )
    if not form.ok:
        return signup_page(form, 400)
    started = time.monotonic()
    if limits["address"].hit(form.clean_email):
        _store_and_mail(svc, form)
    else:
        log.info("signup attempts limit reached for one address; no email this time")
    page = render_template("check_inbox.html", advice=advice)
    # new, known or suppressed: the answer takes the same time (no mail server is
    # involved, so the work is small and this floor hides what difference is left)
    rest = svc.options.signup_answer_seconds - (time.monotonic() - started)
    if rest > 0:
        time.sleep(rest)
    return page


def _store_and_mail(svc: Services, form: SignupForm) -> None:
    """Save the signup and queue the one email it calls for, at most once per window.

    The request never talks to the mail server: the email is queued in the same
    transaction and the worker sends it. Every branch does the same kind of work
    (a lookup, a write, a commit), so the time taken says nothing about the address.
    """
    config = svc.config
    consent = flows.Consent(
        client_ip(), user_agent(), consent_version(config), consent_text(config)
    )
    for attempt in (1, 2):  # a concurrent signup for the same new address wins the insert
        with Session(svc.engine, expire_on_commit=False) as session:
            now = svc.now()
            queued = False
            try:
                signup = flows.start_signup(session, config, form, consent, now)
                sub = signup.sub
                if (
                    sub is not None
                    and signup.mail
                    and flows.claim_mail_slot(session, sub, now, svc.options.confirm_interval)
                ):
                    step = (
                        mailer.CONFIRM_STEP
                        if signup.mail == flows.CONFIRM_MAIL
                        else mailer.ALREADY_STEP
                    )
                    queued = mailer.queue(svc, session, sub, step, signup.change)
                else:  # suppressed, refused, or emailed in the last minutes: no email
                    mailer.rehearse(svc, session, form.clean_email)
                session.commit()
            except IntegrityError:
                session.rollback()
                if attempt == 2:
                    raise
                continue
        if queued:
            svc.worker.notify()
        return


# -- pages behind a link's token --------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """A link's token, read: what it carries and, for preferences links, when it was made."""

    token: str
    payload: str
    issued: datetime | None = None


LinkView = Callable[[Link, Services, Session], Page]


def link_page(purpose: str) -> Callable[[LinkView], Callable[[str], Page]]:
    """For the routes behind an emailed link: read its token (a bad or expired one
    gets its own page), then call the view with the link, the services and a session."""

    def decorate(view: LinkView) -> Callable[[str], Page]:
        @functools.wraps(view)
        def page(token: str) -> Page:
            link = read_link(purpose, token)
            if not isinstance(link, Link):
                return link
            svc = services()
            with Session(svc.engine, expire_on_commit=False) as session:
                return view(link, svc, session)

        return page

    return decorate


def read_link(purpose: str, token: str) -> Link | tuple[str, int]:
    """The link in `token`, or the page to show instead."""
    if len(token) > MAX_TOKEN:
        return bad_link()
    tokens = services().tokens
    try:
        if purpose == PREFERENCES:  # its age decides what the page shows
            return Link(token, *tokens.read_issued(purpose, token))
        return Link(token, tokens.read(purpose, token))
    except TokenError as exc:
        if exc.expired:
            return message_page(
                "This link has expired",
                "Confirmation links work for 7 days. Please sign up again and we will "
                "send you a new one.",
                410,
                signup_link=True,
            )
        return bad_link()


def bad_link() -> tuple[str, int]:
    log.info("invalid link token on %s", request.url_rule)
    return message_page(
        "This link does not work",
        "It may have been cut short or changed. Please open the link from the email "
        "again, or copy the whole link into your browser. Nothing was changed.",
        400,
    )


@bp.route("/confirm/<token>", methods=["GET", "POST"])
@link_page(CONFIRM)
def confirm(link: Link, svc: Services, session: Session) -> Page:
    """GET shows a button; only the POST confirms (mail scanners open links too)."""
    public_id, change = flows.split_payload(link.payload)
    if request.method != "POST":
        sub = flows.by_public_id(session, public_id)
        state = None
        if sub is not None:
            if change is not None and flows.pending_change(session, sub, change):
                state = "pending"
            elif sub.status == ACTIVE:
                state = "already"
            elif change is None and sub.status == PENDING:
                state = "pending"
        if state is None or sub is None:
            return used_link()
        return render_template("confirm.html", state=state, sub=sub, links=_links(sub))
    result, sub = flows.confirm(
        session, svc.config, public_id, svc.now(), client_ip(), change=change
    )
    session.commit()
    if result == "invalid" or sub is None:
        return used_link()
    # the urgent email (red flags) and a first step due now go at once, off this thread
    svc.worker.notify(sub.id)
    return render_template("confirm.html", state=result, sub=sub, links=_links(sub))


def used_link() -> tuple[str, int]:
    return message_page(
        "This link is no longer valid",
        "It was already used, or you have unsubscribed since. Nothing was changed. "
        "To get our emails again, please sign up again.",
        410,
        signup_link=True,
    )


def _links(sub: Subscriber) -> dict[str, str]:
    tokens = services().tokens
    return {
        "unsubscribe": url_for("drip.unsubscribe", token=tokens.make(UNSUBSCRIBE, sub.public_id)),
        "preferences": url_for("drip.preferences", token=tokens.make(PREFERENCES, sub.public_id)),
    }


@bp.route("/u/<token>", methods=["GET", "POST"])
@link_page(UNSUBSCRIBE)
def unsubscribe(link: Link, svc: Services, session: Session) -> Page:
    """RFC 8058: a POST (body List-Unsubscribe=One-Click) unsubscribes by the token
    alone, with no cookie or CSRF token, and answers 200, never a redirect. A GET
    only shows the button: link scanners must not unsubscribe anyone."""
    if request.method != "POST":
        sub = flows.by_public_id(session, link.payload)
        if sub is None or sub.status == UNSUBSCRIBED or sub.withdrawn_at:
            return render_template("unsubscribed.html")
        return render_template(
            "unsubscribe.html", preferences=_links(sub)["preferences"], token=link.token
        )
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    how = "one-click" if one_click and "button" not in request.form else "page"
    flows.unsubscribe(session, svc.config, link.payload, svc.now(), how)
    session.commit()
    return render_template("unsubscribed.html")


@bp.route("/p/<token>", methods=["GET", "POST"])
@link_page(PREFERENCES)
def preferences(link: Link, svc: Services, session: Session) -> Page:
    """The subscriber's answers, pauses and series; each button is an action
    (actions.py). An old link shows no answers, only a way to get a fresh one."""
    sub = flows.by_public_id(session, link.payload)
    if sub is None:
        return message_page(
            "We hold nothing for this address",
            "There is nothing to change. To get our emails, please sign up.",
            410,
            signup_link=True,
        )
    max_age = svc.options.preferences_max_age
    if link.issued is None or svc.now() - link.issued > max_age:
        # an old link (perhaps forwarded): answers only behind a fresh one
        return _fresh_link(svc, session, sub, max_age.days)
    token = link.token
    if request.method != "POST" or sub.status != ACTIVE:
        return preferences_page(session, sub, token, done=request.args.get("done", ""))
    if not csrf_ok():
        return preferences_page(
            session,
            sub,
            token,
            status=400,
            notice="That form was open too long. Please make your change again.",
            advice=advice_for(svc.config, read_topics(request.form, svc.config).symptoms),
        )
    action = read_choice(request.form, "action", tuple(actions.ACTIONS))
    if action is None:
        return preferences_page(
            session, sub, token, status=400, notice="Please use one of the buttons on the page."
        )
    outcome = actions.ACTIONS[action](actions.Change(svc, session, sub, request.form, svc.now()))
    if isinstance(outcome, actions.Again):
        return preferences_page(
            session,
            sub,
            token,
            status=400,
            notice=outcome.notice,
            errors=outcome.errors,
            advice=outcome.advice,
        )
    session.commit()
    if isinstance(outcome, actions.Show):
        if outcome.wake:
            svc.worker.notify(sub.id)
        return render_template(outcome.template, **outcome.context)
    return redirect(url_for("drip.preferences", token=token, done=outcome.key), 303)


def _fresh_link(svc: Services, session: Session, sub: Subscriber, days: int) -> Page:
    """The page for an old preferences link: no answers, a button that emails the
    address's owner a fresh link, and the unsubscribe link (which always works)."""
    unsubscribe = _links(sub)["unsubscribe"]
    if request.method != "POST":
        return render_template("fresh_link.html", days=days, unsubscribe=unsubscribe, sent=False)
    if not csrf_ok() or read_choice(request.form, "action", ("fresh",)) is None:
        return render_template("fresh_link.html", days=days, unsubscribe=unsubscribe, sent=False)
    now = svc.now()
    queued = False
    if sub.status in (ACTIVE, PENDING) and flows.claim_mail_slot(
        session, sub, now, svc.options.confirm_interval
    ):
        queued = mailer.queue(svc, session, sub, mailer.FRESH_STEP)
    audit.record(session, now, "web", "preferences.fresh_link_asked", sub.id, queued=queued)
    session.commit()
    if queued:
        svc.worker.notify()
    return render_template("fresh_link.html", days=days, unsubscribe=unsubscribe, sent=True)


def preferences_page(
    session: Session,
    sub: Subscriber,
    token: str,
    *,
    status: int = 200,
    done: str = "",
    notice: str = "",
    errors: dict[str, str] | None = None,
    advice: list[Advice] | None = None,
) -> tuple[str, int]:
    config = services().config
    paused = sub.paused_until is not None and sub.paused_until > services().now()
    return (
        render_template(
            "preferences.html",
            sub=sub,
            token=token,
            chosen=sub.symptom_keys,
            symptoms=config.symptoms,
            red_flags=config.red_flags,
            common_zones=[(z, label(z)) for z in COMMON],
            all_zones=[(z, label(z)) for z in all_zones() if z not in COMMON],
            campaigns=flows.campaign_states(session, config, sub),
            newsletters=bool(config.newsletters),
            paused=paused,
            weeks=PAUSE_WEEKS,
            done=DONE.get(done, ""),
            notice=notice,
            errors=errors or {},
            unsubscribe=_links(sub)["unsubscribe"],
            advice=advice or [],
            flag_advice={a.key: a for a in every_advice(config)},
        ),
        status,
    )
