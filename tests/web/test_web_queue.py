"""Emails from the web pages go through a durable queue, never from the request.

Real parts: the real SMTP sink (slowed down like a 20 s relay, scaled), real
`drip serve` and `drip send` processes, one real SQLite file.
"""

from __future__ import annotations

import re
import signal
import statistics
import threading
import time
from datetime import timedelta

import requests
from mailsink import MailSink, free_port
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from test_web_browser import wait_until_up
from web_fixtures import MON_10, ZONE, Web, make_web, web_fixture, web_project  # noqa: F401

from drip.models import QueuedMail
from drip.subscribers import suppress

LATER = (MON_10 + timedelta(minutes=1)).isoformat()


def queue_rows(web: Web) -> list[tuple[str, str]]:
    with Session(web.services.engine) as s:
        return [(q.kind, q.status) for q in s.scalars(select(QueuedMail).order_by(QueuedMail.id))]


def queue_signups(web: Web, count: int, prefix: str = "q") -> None:
    """Signups whose confirmations wait in the queue (no worker runs)."""
    web.client.deliver = False
    for i in range(count):
        hidden = web.form()
        data = {**hidden, "email": f"{prefix}{i}@example.org", "timezone": ZONE, "consent": "yes"}
        page = web.client.post("/subscribe", data=data, environ_base={"REMOTE_ADDR": f"10.0.0.{i}"})
        assert page.status_code == 200
    web.client.deliver = True


def test_the_request_only_queues_and_the_worker_sends_exactly_once(web: Web):
    queue_signups(web, 1)
    assert not web.sink.received and queue_rows(web) == [("confirm", "queued")]
    web.services.worker.run_once()
    web.services.worker.run_once()
    (mail,) = web.sink.received
    assert mail.subject == "Please confirm your email address"
    assert queue_rows(web) == [("confirm", "sent")]
    with Session(web.services.engine) as s:
        row = s.scalars(select(QueuedMail)).one()
        assert row.data is None and row.sent_at == web.clock.now  # content dropped once sent


def test_two_drip_send_processes_drain_the_queue_exactly_once(tmp_path, sink: MailSink):
    web = make_web(web_project(tmp_path, sink), sink)
    queue_signups(web, 15)
    sink.handler.delay = 0.05  # so the two runs overlap
    procs = [web.project.popen("send", "--now", LATER, "--wait", "30") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    recipients = sorted(m.recipient for m in sink.received)
    assert recipients == sorted(f"q{i}@example.org" for i in range(15))
    assert {s for _, s in queue_rows(web)} == {"sent"}
    assert "queued emails: " in outputs[0][0] + outputs[1][0]


def test_a_send_killed_mid_smtp_leaves_the_email_in_doubt_never_resent(tmp_path, sink: MailSink):
    web = make_web(web_project(tmp_path, sink), sink)
    queue_signups(web, 1)
    sink.handler.delay = 8  # the server holds the 250 after DATA
    proc = web.project.popen("send", "--now", LATER)
    deadline = time.monotonic() + 60
    while queue_rows(web) != [("confirm", "sending")] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queue_rows(web) == [("confirm", "sending")]  # claimed and committed before SMTP
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    sink.handler.delay = 0
    soon = web.project.run("send", "--now", (MON_10 + timedelta(minutes=5)).isoformat())
    assert soon.returncode == 0 and queue_rows(web) == [("confirm", "sending")]  # maybe alive
    later = web.project.run("send", "--now", (MON_10 + timedelta(minutes=30)).isoformat())
    assert later.returncode == 0, later.stderr
    assert queue_rows(web) == [("confirm", "in_doubt")]
    assert "1 in doubt" in later.stdout
    assert len(sink.received) <= 1  # the killed attempt at most; never a second copy


def test_mail_bombing_one_mailbox_with_plus_tags_is_capped(tmp_path, sink: MailSink):
    web = make_web(web_project(tmp_path, sink), sink)
    for i in range(1, 41):
        hidden = web.form()
        data = {**hidden, "email": f"victim+{i}@example.org", "timezone": ZONE, "consent": "yes"}
        ip = {"REMOTE_ADDR": f"10.1.{i}.1"}
        assert web.client.post("/subscribe", data=data, environ_base=ip).status_code == 200
    in_mailbox = [m for m in sink.received if m.recipient.startswith("victim")]
    assert len(in_mailbox) == 3  # DRIP_CONFIRMATIONS_PER_MAILBOX, default 3 a day
    web.clock.advance(hours=25)
    hidden = web.form()
    data = {**hidden, "email": "VICTIM+again@Example.org", "timezone": ZONE, "consent": "yes"}
    web.client.post("/subscribe", data=data, environ_base={"REMOTE_ADDR": "10.2.0.1"})
    assert len([m for m in sink.received if m.recipient.startswith("victim")]) == 4


def test_the_hourly_cap_queues_the_rest_for_the_next_hour(tmp_path, sink: MailSink):
    web = make_web(web_project(tmp_path, sink), sink)
    queue_signups(web, 5)
    web.project.env["DRIP_CONFIRMATIONS_PER_HOUR"] = "2"
    first = web.project.run("send", "--now", LATER)
    assert first.returncode == 0, first.stderr
    assert len(sink.received) == 2 and "3 waiting (hourly cap)" in first.stdout
    same_hour = web.project.run("send", "--now", (MON_10 + timedelta(minutes=50)).isoformat())
    assert len(sink.received) == 2 and same_hour.returncode == 0
    next_hour = web.project.run("send", "--now", (MON_10 + timedelta(minutes=62)).isoformat())
    assert len(sink.received) == 4 and next_hour.returncode == 0
    web.project.env["DRIP_CONFIRMATIONS_PER_HOUR"] = "lots"
    bad = web.project.run("send", "--now", LATER)
    assert bad.returncode == 1 and "DRIP_CONFIRMATIONS_PER_HOUR" in bad.stderr
    assert "Traceback" not in bad.stderr


# -- a real server with a slow relay ---------------------------------------------------


class Browserless:
    """A client that does what the form does: GET (cookie and token), then POST."""

    def __init__(self, url: str):
        self.url = url
        self.http = requests.Session()

    def signup(self, address: str, ip: str) -> tuple[int, float]:
        headers = {"X-Forwarded-For": ip}
        page = self.http.get(f"{self.url}/subscribe", headers=headers, timeout=60)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        version = re.search(r'name="consent_version" value="([^"]+)"', page.text).group(1)
        data = {
            "csrf_token": token,
            "consent_version": version,
            "email": address,
            "timezone": ZONE,
            "consent": "yes",
            "symptom": "night_cramps",
        }
        start = time.monotonic()
        answer = self.http.post(f"{self.url}/subscribe", data=data, headers=headers, timeout=60)
        return answer.status_code, time.monotonic() - start


def test_a_slow_relay_slows_no_page_and_timing_does_not_tell_who_is_known(tmp_path, sink: MailSink):
    project = web_project(tmp_path, sink)
    project.env["DRIP_TRUSTED_PROXIES"] = "1"
    for i in range(8):
        project.cli("subscribers", "add", f"known{i}@example.org", "--confirmed")
    from drip.db import make_engine

    engine = make_engine(project.database_url)
    with Session(engine) as s:
        for i in range(8):
            suppress(s, f"blocked{i}@example.org", "hard-bounce", MON_10)
        s.commit()
    sink.handler.delay = 1.5  # a relay that takes 1.5 s per email
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = project.popen("serve", "--port", str(port), "--threads", "4")
    try:
        wait_until_up(url, proc)
        client = Browserless(url)
        client.signup("warmup@example.org", "10.9.0.1")
        # 12 signups at once on 4 threads: /healthz must still answer at once
        results: list[tuple[int, float]] = []
        threads = [
            threading.Thread(
                target=lambda i=i: results.append(
                    Browserless(url).signup(f"burst{i}@example.org", f"10.8.0.{i}")
                )
            )
            for i in range(12)
        ]
        for t in threads:
            t.start()
        time.sleep(0.3)
        start = time.monotonic()
        health = requests.get(f"{url}/healthz", timeout=30)
        health_time = time.monotonic() - start
        for t in threads:
            t.join(60)
        assert health.status_code == 200 and health_time < 1.0, health_time
        assert [code for code, _ in results] == [200] * 12
        assert max(t for _, t in results) < 1.5, results  # one relay round trip is 1.5 s

        times: dict[str, list[float]] = {"unknown": [], "known": [], "suppressed": []}
        for i in range(6):
            for kind, address in (
                ("unknown", f"new{i}@example.org"),
                ("known", f"known{i}@example.org"),
                ("suppressed", f"blocked{i}@example.org"),
            ):
                code, took = client.signup(address, f"10.7.{i}.{len(kind)}")
                assert code == 200
                times[kind].append(took)
        medians = {kind: statistics.median(v) for kind, v in times.items()}
        print(f"signup POST medians {medians}, /healthz during the burst {health_time:.3f} s")
        assert max(medians.values()) < 0.6, medians
        # the same work in every case (a suppressed address's email is built and
        # thrown away) under a 0.2 s floor: the time does not tell who drip knows
        assert min(medians.values()) >= 0.2, medians
        assert max(medians.values()) - min(medians.values()) < 0.03, medians
        # and the emails did go, from the worker
        sink.handler.wait_for(1 + 12 + 6 + 6, timeout=120)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert not [m for m in sink.received if m.recipient.startswith("blocked")]
    with engine.connect() as conn:
        left = conn.execute(text("select count(*) from mail_queue where status != 'sent'"))
        assert left.scalar_one() == 0
