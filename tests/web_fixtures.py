"""Fixtures for the web tests: the app on a real SQLite file, the real SMTP sink.

A test module imports the fixture by its function name, `web_fixture`, and asks
for it as `web`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from conftest import FIXTURES, Project, make_project
from flask import Flask
from flask.testing import FlaskClient
from mailsink import MailSink, Received
from sqlalchemy.orm import Session

from drip.models import Subscriber
from drip.settings import Settings
from drip.web import build_services, create_app
from drip.web.options import WebOptions
from drip.web.services import Services

# 2026-06-01 is a Monday; 15:00Z is 10:00 in Chicago (the fixture clinic's zone)
MON_10 = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
ZONE = "America/Chicago"
CONFIRM_LINK = re.compile(r"https://clinic\.test(/confirm/[A-Za-z0-9_.\-]+)")


class Clock:
    """The app's clock, moved by the test."""

    def __init__(self, start: datetime = MON_10):
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self.now += timedelta(**delta)
            return self.now


@dataclass
class Web:
    """The app, its test client, the sink and the project, plus helpers."""

    project: Project
    sink: MailSink
    app: Flask
    services: Services
    clock: Clock
    client: FlaskClient
    logs: list[str] = field(default_factory=list)

    def form(self, path: str = "/subscribe") -> dict[str, str]:
        """GET a page (setting the CSRF cookie) and return its hidden fields."""
        page = self.client.get(path)
        assert page.status_code == 200, page.text
        return dict(re.findall(r'name="(csrf_token|consent_version)" value="([^"]+)"', page.text))

    def signup(
        self,
        email: str = "pat@example.org",
        symptoms: tuple[str, ...] = ("night_cramps",),
        red_flags: tuple[str, ...] = (),
        **extra: str,
    ):  # type: ignore[no-untyped-def]
        data: dict[str, object] = {
            **self.form(),
            "email": email,
            "first_name": "Pat",
            "timezone": ZONE,
            "consent": "yes",
            "symptom": list(symptoms),
            "red_flag": list(red_flags),
            "website": "",
        }
        data.update(extra)
        return self.client.post("/subscribe", data=data)

    def confirm_path(self, address: str) -> str:
        """The path in the newest confirmation email to `address`."""
        for mail in reversed(self.sink.handler.to(address)):
            found = CONFIRM_LINK.search(body_text(mail))
            if found:
                return found.group(1)
        raise AssertionError(f"no confirmation email to {address}")

    def subscriber(self, address: str) -> Subscriber | None:
        with Session(self.services.engine) as session:
            from drip.subscribers import find

            sub = find(session, address)
            if sub is not None:
                session.expunge(sub)
            return sub


def body_text(received: Received) -> str:
    msg = message_from_bytes(received.data, policy=policy.default)
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def body_html(received: Received) -> str:
    msg = message_from_bytes(received.data, policy=policy.default)
    part = msg.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def web_project(root: Path, sink: MailSink) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    return make_project(root, FIXTURES / "web", sink.url)


class DeliveringClient(FlaskClient):
    """After each response, the mail worker runs once in the test's thread, as the
    real worker thread does right after a request's notify(). The request itself
    never sends (tests/web/test_web_queue.py checks that with a real server)."""

    deliver = True

    def open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().open(*args, **kwargs)
        if self.deliver:
            self.application.extensions["drip"].worker.run_once()
        return response


def make_web(project: Project, sink: MailSink, **options: object) -> Web:
    clock = Clock()
    settings = Settings.from_env(project.env)
    # no answer-time floor here: tests/web/test_web_queue.py measures it on a real server
    defaults = WebOptions(send_lock_wait=0.5, signup_answer_seconds=0)
    opts = replace(defaults, **options)  # type: ignore[arg-type]
    services = build_services(settings, opts, clock=clock)
    app = create_app(services=services)
    app.test_client_class = DeliveringClient
    return Web(project, sink, app, services, clock, app.test_client())


@pytest.fixture(name="web")
def web_fixture(tmp_path: Path, sink: MailSink) -> Web:
    return make_web(web_project(tmp_path, sink), sink)
