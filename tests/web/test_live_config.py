"""Edits of campaigns.toml under a running `drip run`: good ones are taken up, broken ones
are reported once and the last good version keeps serving and sending."""

from __future__ import annotations

import signal
import time
import urllib.request
from datetime import UTC, datetime, timedelta

from mailsink import free_port
from sqlalchemy.orm import Session
from test_web_browser import wait_until_up
from test_web_commands import always_open
from web_fixtures import web_project

from drip import db, enrollment, subscribers
from drip.config import load_config
from drip.sender import SUPERSEDED, Sender
from drip.tokens import Tokens
from drip.transport import SMTPTransport

NEW_SUBJECT = "Why muscles tighten after dark"


def wait_for(sink, recipient: str, subject: str, proc, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(m.recipient == recipient and m.subject == subject for m in sink.received):
            return
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    got = [(m.recipient, m.subject) for m in sink.received]
    raise AssertionError(f"{recipient} never got {subject!r}; got {got}")


def page_answers(url: str) -> int:
    with urllib.request.urlopen(f"{url}/subscribe", timeout=5) as answer:
        return answer.status


def test_drip_run_takes_up_a_good_edit_and_survives_a_broken_one(tmp_path, sink):
    project = web_project(tmp_path, sink)
    always_open(project)
    added = project.cli(
        "subscribers", "add", "p0@example.org", "--symptoms", "night_cramps", "--confirmed"
    )
    assert added.exit_code == 0, added.output
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = project.popen("run", "--port", str(port), "--every", "2")
    try:
        wait_until_up(url, proc)
        wait_for(sink, "p0@example.org", "Welcome, here is what to expect", proc)

        # a good edit: the second email comes at once, under its new subject
        project.edit_config('delay = "2d"', 'delay = "0d"')
        project.edit_config("Why muscles tighten at night", NEW_SUBJECT)
        wait_for(sink, "p0@example.org", NEW_SUBJECT, proc)
        good = load_config(project.config)

        # a broken edit: reported once, the last good version serves and sends on
        project.edit_config('delay = "4d"', 'delay = "soon"')
        engine = db.make_engine(project.database_url)
        with Session(engine, expire_on_commit=False) as session:
            now = datetime.now(UTC)
            sub = subscribers.create(
                session,
                good,
                email="p1@example.org",
                symptoms=["night_cramps"],
                now=now,
                confirmed=True,
            )
            enrollment.sync_subscriber(session, good, sub, now)
            session.commit()
        engine.dispose()
        wait_for(sink, "p1@example.org", "Welcome, here is what to expect", proc)
        time.sleep(5)  # several more looks at the broken file
        assert page_answers(url) == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    complaints = [line for line in err.splitlines() if "cannot be used" in line]
    assert len(complaints) == 1, err
    assert "campaigns.toml" in complaints[0] and "soon" in complaints[0]
    assert "still using the last good version" in complaints[0]
    assert "Traceback" not in err
    # nothing was sent twice, nothing from the broken file
    sent = [(m.recipient, m.subject) for m in sink.received]
    assert len(sent) == len(set(sent)), sent


def test_a_process_holding_an_old_version_sends_nothing_a_newer_one_removed(tmp_path, sink):
    project = web_project(tmp_path, sink)
    always_open(project)
    start = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
    added = project.cli(
        "subscribers",
        "add",
        "p0@example.org",
        "--symptoms",
        "night_cramps",
        "--confirmed",
        "--now",
        start.isoformat(),
    )
    assert added.exit_code == 0, added.output
    assert project.run("send", "--now", start.isoformat()).returncode == 0
    old = load_config(project.config)  # what a long-running process loaded

    # the edit removes the second step; cron's next run takes it up
    text = project.config.read_text()
    begin = text.index('  [[campaign.step]]\n  key = "causes"')
    end = text.index("  [[campaign.step]]", begin + 10)
    project.config.write_text(text[:begin] + text[end:])
    later = start + timedelta(days=3)
    cron = project.run("send", "--now", later.isoformat())
    assert cron.returncode == 0, cron.stderr

    engine = db.make_engine(project.database_url)
    try:
        summary = Sender(
            old,
            engine,
            SMTPTransport.from_url(sink.url),
            Tokens("k" * 32),
            clock=lambda: later,
        ).run()
    finally:
        engine.dispose()
    assert summary.stopped == SUPERSEDED
    subjects = [m.subject for m in sink.received]
    assert subjects == ["Welcome, here is what to expect"], subjects
