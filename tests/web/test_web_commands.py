"""The web side's commands: run (scheduler + cron, no double sends), purge, snippet, demo."""

from __future__ import annotations

import re
import signal
import time
from datetime import timedelta

from conftest import summary
from mailsink import free_port
from test_web_browser import wait_until_up
from web_fixtures import Web, web_fixture, web_project  # noqa: F401


def always_open(project) -> None:  # type: ignore[no-untyped-def]
    """Every hour of every day is in the send window, so real-time sends happen now."""
    project.edit_config("start = 9", "start = 0")
    project.edit_config("end = 19", "end = 24")
    project.edit_config(
        'days = ["mon", "tue", "wed", "thu", "fri"]',
        'days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]',
    )


def test_drip_run_sends_on_its_schedule_and_never_twice_alongside_cron(tmp_path, sink):
    project = web_project(tmp_path, sink)
    always_open(project)
    for i in range(3):
        result = project.cli(
            "subscribers", "add", f"p{i}@example.org", "--symptoms", "night_cramps", "--confirmed"
        )
        assert result.exit_code == 0, result.output
    port = free_port()
    proc = project.popen("run", "--port", str(port))
    crons = [project.popen("send", "--wait", "5") for _ in range(2)]  # cron at the same time
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc)
        for cron in crons:
            _out, err = cron.communicate(timeout=60)
            assert cron.returncode == 0, err
        deadline = time.monotonic() + 30
        while len(sink.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        # would a second copy arrive? Once this run holds the send lock, every run
        # started before it (the scheduler's, the crons') has finished sending
        last = project.run("send", "--wait", "60")
        assert last.returncode == 0 and summary(last.stdout)["sent"] == 0, last.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    subjects = sorted((m.recipient, m.subject) for m in sink.received)
    assert subjects == [
        (f"p{i}@example.org", "Welcome, here is what to expect") for i in range(3)
    ], err
    assert proc.returncode == 0, err


def test_purge_pending_deletes_unconfirmed_signups_after_a_week(web: Web):
    web.signup("never@example.org")
    web.signup("keeps@example.org")
    web.client.post(web.confirm_path("keeps@example.org"))
    later = (web.clock.now + timedelta(days=8)).isoformat()
    result = web.project.cli("subscribers", "purge-pending", "--now", later)
    assert result.exit_code == 0, result.output
    assert "purged 1 unconfirmed signup;" in result.output
    assert web.subscriber("never@example.org") is None
    assert web.subscriber("keeps@example.org").status == "active"
    # and its confirmation link now gets the clear page, changing nothing
    page = web.client.post(web.confirm_path("never@example.org"))
    assert page.status_code == 410


def test_cron_s_drip_send_purges_unconfirmed_signups_too(web: Web):
    # cron plus `drip serve` (no `drip run`) must keep the week's promise as well
    web.signup("never@example.org")
    web.signup("keeps@example.org")
    web.client.post(web.confirm_path("keeps@example.org"))
    soon = web.project.cli("send", "--now", (web.clock.now + timedelta(days=6)).isoformat())
    assert soon.exit_code == 0 and "purged" not in soon.output
    assert web.subscriber("never@example.org") is not None
    later = web.project.cli("send", "--now", (web.clock.now + timedelta(days=8)).isoformat())
    assert later.exit_code == 0, later.output
    assert "drip send: purged 1 unconfirmed signup; 0 expired re-signups discarded" in later.output
    assert web.subscriber("never@example.org") is None
    assert web.subscriber("keeps@example.org").status == "active"


def test_purge_discards_an_unconfirmed_re_signup(web: Web):
    from drip.tokens import UNSUBSCRIBE

    web.signup("again@example.org")
    web.client.post(web.confirm_path("again@example.org"))
    sub = web.subscriber("again@example.org")
    web.client.post(f"/u/{web.services.tokens.make(UNSUBSCRIBE, sub.public_id)}")
    web.clock.advance(days=1)
    web.signup("again@example.org", symptoms=("heavy_legs",))
    link = web.confirm_path("again@example.org")
    assert web.subscriber("again@example.org").status == "unsubscribed"  # until confirmed
    later = (web.clock.now + timedelta(days=8)).isoformat()
    result = web.project.cli("subscribers", "purge-pending", "--now", later)
    assert "1 expired re-signup discarded" in result.output
    sub = web.subscriber("again@example.org")
    assert sub.status == "unsubscribed" and sub.symptom_keys == {"night_cramps"}
    assert web.client.post(link).status_code == 410  # that change is gone
    assert web.subscriber("again@example.org").status == "unsubscribed"


def test_snippet_posts_from_the_clinic_site(tmp_path, sink):
    from web_fixtures import make_web

    web = make_web(
        web_project(tmp_path, sink), sink, embed_origins=frozenset({"https://www.clinic.test"})
    )
    html = web.project.cli("snippet").output
    assert '<form method="post" action="https://clinic.test/subscribe"' in html
    assert 'name="symptom" value="night_cramps"' in html
    assert 'name="red_flag" value="breathless"' in html
    assert 'name="website"' in html and 'name="consent" value="yes" required' in html
    version = re.search(r'name="consent_version" value="([^"]+)"', html).group(1)
    page = web.client.post(
        "/subscribe",
        data={
            "email": "snippet@example.org",
            "symptom": ["heavy_legs"],
            "timezone": "America/Denver",
            "consent": "yes",
            "consent_version": version,
            "website": "",
        },
        headers={"Origin": "https://www.clinic.test"},
    )
    assert page.status_code == 200
    assert web.subscriber("snippet@example.org").consent_text_version == version


def test_serve_refuses_to_start_with_bad_settings(tmp_path, sink):
    project = web_project(tmp_path, sink)
    project.env["DRIP_TRUSTED_PROXIES"] = "lots"
    result = project.run("serve", "--port", "0", timeout=60)
    assert result.returncode == 1 and "DRIP_TRUSTED_PROXIES" in result.stderr
    del project.env["DRIP_TRUSTED_PROXIES"]
    project.env["DRIP_EMBED_ORIGINS"] = "www.clinic.test"
    result = project.run("serve", "--port", "0", timeout=60)
    assert result.returncode == 1 and "DRIP_EMBED_ORIGINS" in result.stderr


def test_demo_without_a_browser_still_writes_the_outbox(tmp_path, sink):
    project = web_project(tmp_path / "p", sink)
    folder = tmp_path / "demo"
    result = project.cli("demo", "--no-serve", "--weeks", "2", "--dir", str(folder))
    assert result.exit_code == 0, result.output
    assert (folder / "index.html").is_file() and list((folder / "outbox").glob("*.eml"))
    assert "sample patients" in result.output and "/demo/mail" not in result.output
