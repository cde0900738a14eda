"""The demo's local mail catcher: an SMTP server on 127.0.0.1 and pages to read it.

`drip demo` points drip's real SMTP transport at it, so every email takes the
same path as in production, and shows each one in the browser as the patient
would see it. Demo only: create_app registers these pages only when given a
catcher.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from ..models import ACTIVE, ENROLLED, Enrollment, Subscriber
from . import jobs
from .guard import csrf_ok
from .services import Services


@dataclass(frozen=True)
class Caught:
    number: int
    at: datetime  # on the demo clock
    recipient: str
    data: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "(no subject)")

    def part(self, kind: str) -> str:
        body = self.message.get_body(preferencelist=(kind,))
        return str(body.get_content()) if body is not None else ""


class _Handler:
    def __init__(self, catcher: MailCatcher):
        self.catcher = catcher

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            self.catcher.add(rcpt, envelope.content)
        return "250 2.0.0 Caught by the drip demo"


class DemoClock:
    """Real time plus an offset the demo's buttons move forward."""

    def __init__(self, now: Callable[[], datetime]):
        self._now = now
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now() + self._offset

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += max(delta, timedelta(0))


class MailCatcher:
    def __init__(self, clock: Callable[[], datetime]):
        self.clock = clock
        self._messages: list[Caught] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def add(self, recipient: str, data: bytes) -> None:
        with self._lock:
            self._messages.append(Caught(len(self._messages) + 1, self.clock(), recipient, data))

    @property
    def messages(self) -> list[Caught]:
        with self._lock:
            return list(self._messages)

    def start(self, host: str = "127.0.0.1") -> MailCatcher:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        self._controller = Controller(_Handler(self), hostname=host, port=port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def smtp_url(self) -> str:
        assert self._controller is not None
        c = self._controller
        return f"smtp://{c.hostname}:{c.port}?starttls=off&timeout=10"


bp = Blueprint("demo", __name__, url_prefix="/demo")


def _catcher() -> MailCatcher:
    return current_app.extensions["drip.catcher"]  # type: ignore[no-any-return]


def _services() -> Services:
    return current_app.extensions["drip"]  # type: ignore[no-any-return]


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
    return render_template(
        "catcher.html",
        messages=list(reversed(messages)),
        chosen=chosen,
        now=_services().now(),
        next_due=next_due(_services()),
        show_text=request.args.get("text") == "1",
    )


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
    services = _services()
    clock = current_app.extensions["drip.demo_clock"]
    step = request.form.get("by", "")
    if step == "next":
        jump_to_next_email(services, clock)
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
    now = services.now()
    with Session(services.engine) as session:
        return session.scalar(
            select(func.min(Enrollment.next_due_at))
            .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
            .where(
                Enrollment.state == ENROLLED,
                Subscriber.status == ACTIVE,
                or_(Subscriber.paused_until.is_(None), Subscriber.paused_until <= now),
            )
        )


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
