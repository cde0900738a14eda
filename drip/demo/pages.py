"""The demo mail catcher's pages: every caught email as the patient sees it, and
buttons that move the demo clock on and send what falls due, as cron would.

Only `drip demo` (demo/live.py) adds them to the app, with `install`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from ..models import PENDING, Subscriber
from ..next_work import next_step_due
from ..web import jobs
from ..web.guard import csrf_ok
from ..web.pages import services as app_services
from ..web.services import Services
from .catcher import Caught, MailCatcher
from .clock import DemoClock
from .times import LocalTime, local_time

bp = Blueprint(
    "demo", __name__, url_prefix="/demo", template_folder="templates", static_folder="static"
)


def install(app: Flask, catcher: MailCatcher, clock: DemoClock) -> None:
    """Add the mail catcher's pages and clock buttons to the patient web app;
    `/` then opens the catcher instead of the signup form, and every other page
    links back to it."""
    app.extensions["drip.catcher"], app.extensions["drip.demo_clock"] = catcher, clock
    app.config["HOME_ENDPOINT"] = "demo.mail"
    # after confirming, unsubscribing or changing answers, the way back to the emails
    app.config["BACK_LINK"] = ("demo.mail", "← Back to the demo mail catcher")
    app.register_blueprint(bp)


def _catcher() -> MailCatcher:
    return current_app.extensions["drip.catcher"]  # type: ignore[no-any-return]


@bp.get("/mail")
@bp.get("/mail/<int:number>")
def mail(number: int | None = None) -> str:
    messages = _catcher().messages
    chosen = None
    if messages:
        chosen = (
            messages[-1]
            if number is None
            else next((m for m in messages if m.number == number), None)
        )
        if chosen is None:
            abort(404)
    g.csp = (
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
    )
    services = app_services()
    zones, demo_zone = patient_zones(services)
    due = next_due(services)

    def sent_at(caught: Caught) -> LocalTime:
        return local_time(caught.at, zones.get(caught.recipient.lower(), demo_zone))

    return render_template(
        "catcher.html",
        messages=list(reversed(messages)),
        chosen=chosen,
        now=local_time(services.now(), demo_zone, "%a %d %b %Y, %H:%M"),
        next_due=local_time(due, demo_zone) if due is not None else None,
        sent_at=sent_at,
        show_text=request.args.get("text") == "1",
        note=nothing_sent(services, due, demo_zone) if request.args.get("jumped") else "",
    )


def nothing_sent(services: Services, due: datetime | None, zone: str) -> str:
    """Why "Jump to the next email" sent nothing, in a newcomer's words."""
    if due is not None:
        when = local_time(due, zone, "%A %d %B at %H:%M")
        return f"Nothing is due yet: the next email is due on {when.text}."
    with Session(services.engine) as session:
        counts = dict(
            session.execute(
                select(Subscriber.status, func.count()).group_by(Subscriber.status)
            ).all()
        )
    if not counts:
        return "No one has signed up yet: open the sign-up form and sign up first."
    if counts.get(PENDING):
        return (
            "Nothing is due yet: confirm the signup first "
            "(press the button in the confirmation email)."
        )
    return (
        "There are no more emails to send: each patient has had every email "
        "of their series, or has paused or left."
    )


def patient_zones(services: Services) -> tuple[dict[str, str], str]:
    """Each patient's time zone by address, and the demo's: the newest patient's
    (the newcomer who just signed up), else the clinic's."""
    with Session(services.engine) as session:
        rows = session.execute(
            select(Subscriber.email, Subscriber.timezone).order_by(Subscriber.id)
        ).all()
    zones = {address.lower(): zone for address, zone in rows}
    return zones, rows[-1][1] if rows else services.config.clinic.timezone


@bp.get("/mail/<int:number>/html")
def mail_html(number: int) -> Response:
    """The email's HTML part alone, sandboxed: links open in the whole window."""
    found = next((m for m in _catcher().messages if m.number == number), None)
    if found is None:
        abort(404)
    html = found.part("html") or "<p>(no HTML part)</p>"
    # links open in the whole window (as a patient's mail app would open them)
    html = html.replace("<head>", '<head><base target="_top">', 1)
    html = html.replace('target="_blank"', 'target="_top"')
    g.csp = (
        "sandbox allow-popups allow-popups-to-escape-sandbox "
        "allow-top-navigation-by-user-activation; default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data: https:; frame-ancestors 'self'"
    )
    return Response(html, content_type="text/html; charset=utf-8")


@bp.post("/advance")
def advance() -> Response:
    """Move the demo clock forward, then send what is due, like cron would."""
    if not csrf_ok():
        abort(400)
    services = app_services()
    clock: DemoClock = current_app.extensions["drip.demo_clock"]
    step = request.form.get("by", "")
    if step == "next":
        if not jump_to_next_email(services, clock):
            # the page says why, instead of a button that seems to do nothing
            return redirect(url_for("demo.mail", jumped="nothing"), 303)
    elif step in ("hour", "day", "week"):
        clock.advance(
            {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}[step]
        )
        jobs.send_due(services, wait=5)
    else:
        abort(400)
    return redirect(url_for("demo.mail"), 303)


def next_due(services: Services) -> datetime | None:
    """When the next drip email is due for anyone (None: nothing is scheduled)."""
    with Session(services.engine) as session:
        return next_step_due(session, services.now())


def jump_to_next_email(services: Services, clock: DemoClock) -> int:
    """Advance to the next due step and send; repeat a few times past send-window waits."""
    for _ in range(5):
        due = next_due(services)
        if due is None:
            return 0
        clock.advance(due - services.now() + timedelta(seconds=1))
        summary = jobs.send_due(services, wait=5)
        if summary is not None and summary.sent:
            return summary.sent
    return 0
