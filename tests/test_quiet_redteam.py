"""Red-team of cron's idle verdict (drip/quiet.py, drip/next_work.py): states a
clinic reaches in ordinary use where the verdict was never written (every cron run
paid the full path), or where the quiet line differed from a full run's."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from conftest import summary
from mailsink import free_port
from newsletter_helpers import add, add_newsletter, newsletter_rows, no_series
from sqlalchemy.orm import Session
from test_cron_path import add_patient, probe
from test_quiet import IDLE_LINE, at, full_send, iso, welcomed
from web.test_web_browser import wait_until_up

from drip import mailqueue
from drip.config import load_config
from drip.db import ensure_schema, make_engine
from drip.message import Envelope
from drip.next_work import next_work

NEWS_AT = datetime.fromisoformat("2026-06-02T15:00:00Z")  # 10:00 in Chicago, a Tuesday


def quiet_taken(project, moment: datetime) -> tuple[dict, str]:
    result, output = probe(project, "send", "--now", iso(moment))
    assert result["code"] == 0, output
    return result, output


def test_a_deferred_newsletter_copy_of_someone_who_left_does_not_void_every_verdict(project, sink):
    """A copy deferred by a busy mailbox, then its patient unsubscribes: the sender
    never retries it (nor does it ever change the row), so nothing is due because
    of it. It must not keep next_work at "now" forever."""
    no_series(project)
    add_newsletter(project, send_at="2026-06-02 10:00")
    add(project, "stays@example.org")
    add(project, "busy@example.org")
    sink.handler.by_recipient["busy@example.org"] = "tempfail"
    first = project.run("send", "--now", iso(NEWS_AT))
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout)["deferred"] == 1
    assert newsletter_rows(project) == {"stays@example.org": "sent", "busy@example.org": "deferred"}
    left = project.cli("subscribers", "unsubscribe", "busy@example.org", "--now", iso(NEWS_AT))
    assert left.exit_code == 0, left.output
    later = NEWS_AT + timedelta(minutes=30)  # past the copy's retry time
    assert full_send(project, later) == [IDLE_LINE]
    assert (project.root / "drip.db-quiet").exists(), "no verdict: every cron run in full"
    result, output = quiet_taken(project, later + timedelta(minutes=5))
    assert result["loaded"] == [], output
    assert IDLE_LINE in output
    assert len(sink.received) == 1


def test_a_newsletter_held_by_min_gap_leaves_a_verdict_until_the_gap_ends(project, sink):
    """The welcome went at 9:00 on Monday (Chicago), the newsletter's instant is 15:00
    the same day: min_gap (12 h) holds it until 21:00, after the window, so it goes
    at 9:00 on Tuesday. The 18 hours between are not "work now": the verdict is written,
    and a full run finds nothing until then, and sends the newsletter at that moment."""
    add_newsletter(project, send_at="2026-06-01 15:00")
    add(project, "pat@example.org")  # confirmed at 7:00 in Chicago
    welcome = project.run("send", "--now", "2026-06-01T14:00:00Z")
    assert summary(welcome.stdout)["sent"] == 1, welcome.stdout + welcome.stderr
    held = datetime.fromisoformat("2026-06-01T20:30:00Z")  # 15:30 in Chicago
    assert full_send(project, held) == [IDLE_LINE]
    assert (project.root / "drip.db-quiet").exists(), "no verdict for 18 hours of cron runs"
    result, output = quiet_taken(project, held + timedelta(minutes=10))
    assert result["loaded"] == [], output
    engine = make_engine(project.database_url)
    with Session(engine) as session:
        upcoming = next_work(session, load_config(project.config), held)
    engine.dispose()
    tuesday_9 = datetime.fromisoformat("2026-06-02T14:00:00Z")
    assert upcoming == tuesday_9
    assert full_send(project, tuesday_9 - timedelta(seconds=1)) == [IDLE_LINE]
    assert newsletter_rows(project) == {}
    sent = full_send(project, tuesday_9)
    assert summary(sent[-1])["sent"] == 1, sent
    assert newsletter_rows(project) == {"pat@example.org": "sent"}


def queue_web_email(project, address: str, now: datetime) -> None:
    """A confirmation as the web pages queue it (drip/mailqueue.py)."""
    engine = make_engine(project.database_url)
    ensure_schema(engine)
    message = b"From: care@clinic.test\r\nTo: " + address.encode() + b"\r\nSubject: x\r\n\r\nhi\r\n"
    with Session(engine) as session:
        mailqueue.enqueue(
            session,
            kind="confirm",
            envelope=Envelope("care@clinic.test", address, message),
            now=now,
            subscriber_id=None,
        )
        session.commit()
    engine.dispose()


def test_the_quiet_path_prints_what_a_full_run_prints_while_a_web_email_waits(project, sink):
    """A busy mailbox defers a queued confirmation by a minute. A full run before its
    retry says it waits; the quiet path, if it is taken then, must say the same."""
    start = datetime.fromisoformat("2026-06-01T15:00:00Z")
    queue_web_email(project, "busy@example.org", start)
    sink.handler.by_recipient["busy@example.org"] = "tempfail"
    first = full_send(project, start)
    assert "drip send: queued emails: 0 sent, 1 deferred, 0 failed, 1 waiting" in first
    moment = start + timedelta(seconds=30)
    full = full_send(project, moment)
    assert full[0] == "drip send: queued emails: 0 sent, 0 deferred, 0 failed, 1 waiting"
    result, output = quiet_taken(project, moment + timedelta(seconds=10))
    if result["loaded"] == []:  # the quiet path was taken: it says the same
        said = [line for line in output.splitlines() if not line.startswith("PROBE ")]
        assert said == full, output
    del sink.handler.by_recipient["busy@example.org"]  # the mailbox takes it at the retry
    sent = full_send(project, start + timedelta(minutes=1))
    assert sent[0] == "drip send: queued emails: 1 sent, 0 deferred, 0 failed"
    result, output = quiet_taken(project, start + timedelta(minutes=2))
    assert result["loaded"] == [], "the queue is empty again: the verdict is back"
    assert IDLE_LINE in output


def test_drip_serve_holding_the_database_open_leaves_the_verdict_standing(project, sink):
    """README: cron's `drip send` beside `drip serve` is a supported set-up. The web
    process keeps the database open (its WAL stays) and its mail worker polls the
    queue every 5 s: reading must not void the verdict, a write through it must."""
    welcomed(project, sink)
    port = free_port()
    server = project.popen("serve", "--port", str(port))
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server)
        assert project.run("send", "--now", at(1)).returncode == 0  # the verdict, WAL kept
        assert (project.root / "drip.db-quiet").exists()
        time.sleep(6)  # at least one poll of the mail worker
        result, output = quiet_taken(project, datetime.fromisoformat(at(2)))
        assert result["loaded"] == [], output
        add_patient(project, "second@example.org")
        result, output = quiet_taken(project, datetime.fromisoformat(at(3)))
        assert "sqlalchemy" in result["loaded"], "a write beside drip serve was missed"
        assert summary(output)["sent"] == 1
    finally:
        server.terminate()
        server.communicate(timeout=20)
