"""Newsletters on the web side: the preferences switch and the public archive.

The archive runs in the real `drip serve` and a real headless Chromium (see
test_web_browser.py for the browser set-up); the preferences switch uses the
app's test client against a real SQLite file and the real SMTP sink.
"""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

from conftest import summary
from mailsink import MailSink, free_port
from newsletter_helpers import add, add_newsletter, newsletter_rows, recipients
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_web_browser import browser, wait_until_up  # noqa: F401
from web_fixtures import make_web, web_project

from drip.models import AuditEntry
from drip.tokens import PREFERENCES

KEY = "2026-06-news"


def send(project, now: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    result = project.run("send", "--now", now)
    assert result.returncode == 0, result.stdout + result.stderr
    return summary(result.stdout)


def test_a_patient_can_stop_newsletters_and_keep_the_series(tmp_path: Path, sink: MailSink):
    project = web_project(tmp_path, sink)
    add_newsletter(project)  # Tuesday 2026-06-02 10:00 local
    web = make_web(project, sink)
    web.signup("pat@example.org")
    web.client.post(web.confirm_path("pat@example.org"))
    sub = web.subscriber("pat@example.org")
    assert sub is not None and sub.status == "active"
    url = f"/p/{web.services.tokens.make(PREFERENCES, sub.public_id)}"
    form = web.form(url)
    page = web.client.get(url).text
    assert "Your email series" in page and "Newsletters</strong> · on" in page

    answer = web.client.post(url, data={**form, "action": "news_off"})
    assert answer.status_code == 303 and "done=news_off" in answer.headers["Location"]
    page = web.client.get(answer.headers["Location"]).text
    assert "You will get no more newsletters" in page
    assert "Newsletters</strong> · stopped by you" in page and "Get newsletters again" in page
    assert re.search(r"Leg health</strong> ·\s*on", page)  # the series is untouched

    send(project, "2026-06-01T15:00:00Z")
    send(project, "2026-06-02T15:00:00Z")  # the newsletter's time
    send(project, "2026-06-03T15:00:00Z")  # the series' second step
    subjects = [m.subject for m in sink.handler.to("pat@example.org")]
    assert "News from the clinic" not in subjects
    assert "Why muscles tighten at night" in subjects
    assert newsletter_rows(project) == {}
    assert web.subscriber("pat@example.org").status == "active"
    with Session(web.services.engine) as s:
        actions = list(s.scalars(select(AuditEntry.action)))
    assert "newsletters.left" in actions

    web.client.post(url, data={**form, "action": "news_on"})
    assert web.subscriber("pat@example.org").newsletters_opt_out is False
    send(project, "2026-06-04T15:00:00Z")  # on again: the copy they missed goes now
    assert recipients(sink) == {"pat@example.org": 1}


def test_one_click_unsubscribe_still_stops_newsletters_too(tmp_path: Path, sink: MailSink):
    project = web_project(tmp_path, sink)
    add_newsletter(project)
    web = make_web(project, sink)
    add(project, "pat@example.org")
    sub = web.subscriber("pat@example.org")
    from drip.tokens import UNSUBSCRIBE

    token = web.services.tokens.make(UNSUBSCRIBE, sub.public_id)
    answer = web.client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    send(project, "2026-06-02T15:00:00Z")
    assert recipients(sink) == {} and newsletter_rows(project) == {}


def test_the_archive_is_off_by_default(tmp_path: Path, sink: MailSink):
    project = web_project(tmp_path, sink)
    add_newsletter(project, archive=True)
    web = make_web(project, sink)
    add(project, "pat@example.org")
    send(project, "2026-06-02T15:00:00Z")
    assert web.client.get("/newsletters").status_code == 404
    assert web.client.get(f"/newsletters/{KEY}").status_code == 404


def test_the_archive_in_a_real_browser(browser, tmp_path: Path, sink: MailSink):  # noqa: F811
    project = web_project(tmp_path, sink)
    project.edit_config('min_gap = "12h"', 'min_gap = "12h"\nnewsletter_archive = true')
    add_newsletter(project, archive=True, name="June tips for tired legs")
    add_newsletter(project, "2026-06-private", send_at="2026-06-03 10:00", name="Not archived")
    add_newsletter(project, "2026-07-later", send_at="2026-07-01 10:00", archive=True,
                   name="Not sent yet")  # fmt: skip
    add(project, "pat@example.org", "heavy_legs", "--name", "Patricia")
    send(project, "2026-06-02T15:00:00Z")
    send(project, "2026-06-03T15:00:00Z")
    assert recipients(sink) == {"pat@example.org": 2}

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = project.popen("serve", "--host", "127.0.0.1", "--port", str(port))
    try:
        wait_until_up(url, proc)
        page = browser.new_page()
        page.set_default_timeout(90_000)
        page.goto(f"{url}/newsletters")
        page.get_by_role("heading", name="Our newsletters").wait_for()
        links = page.locator("ul.archive a")
        assert links.all_inner_texts() == ["June tips for tired legs"]
        assert "June 2, 2026" in page.content()
        links.first.click()
        page.wait_for_url(f"{url}/newsletters/{KEY}")
        text = page.inner_text("body")
        assert "a few tips for the cold days ahead" in text
        assert "Hello," in text and "Patricia" not in text
        assert "Put your feet up" not in text  # a neutral reader: no symptoms
        hrefs = page.eval_on_selector_all("a", "els => els.map(e => e.href)")
        assert hrefs and not [h for h in hrefs if "/u/" in h or "/p/" in h]
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background != "rgba(0, 0, 0, 0)"  # the email's own styles are allowed
        for hidden in ("2026-06-private", "2026-07-later", "nope"):
            assert page.goto(f"{url}/newsletters/{hidden}").status == 404
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_demo_shows_the_example_newsletter_alongside_the_series(tmp_path: Path):
    from email import message_from_bytes, policy
    from email.utils import parsedate_to_datetime

    from conftest import REPO

    from drip.demo import run_demo

    index = run_demo(REPO / "campaigns.toml", tmp_path / "demo", weeks=2, echo=lambda _: None)
    sent: dict[str, list[tuple[object, str]]] = {}
    for eml in (tmp_path / "demo" / "outbox").glob("*.eml"):
        msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
        sent.setdefault(str(msg["To"]), []).append(
            (parsedate_to_datetime(msg["Date"]), str(msg["Subject"]))
        )
    assert len(sent) == 5
    for mails in sent.values():
        mails.sort()
        subjects = [s for _, s in mails]
        assert subjects.count("Travel season: a few easy tips") == 1
        assert "Welcome, here is what to expect" in subjects
        # no two non-urgent emails within min_gap (12h)
        calm = [at for at, s in mails if s != "Please read this today"]
        assert all(b - a >= timedelta(hours=12) for a, b in pairwise(calm))
    assert index.read_text().count("Travel season: a few easy tips") == 5


def test_the_live_demo_mail_catcher_gets_the_newsletter_too(tmp_path: Path):
    from conftest import REPO

    from drip import enrollment, subscribers
    from drip.demo.live import LiveDemo
    from drip.demo.pages import jump_to_next_email

    live = LiveDemo(REPO / "campaigns.toml", tmp_path, port=0)
    try:
        with Session(live.engine) as s:
            sub = subscribers.create(
                s, live.services.config, email="demo@patient.example", symptoms=["swelling"],
                now=live.clock(), confirmed=True, timezone="America/Chicago",
            )  # fmt: skip
            enrollment.sync_subscriber(s, live.services.config, sub, live.clock())
            s.commit()
        for _ in range(6):
            jump_to_next_email(live.services, live.clock)
        subjects = [m.subject for m in live.catcher.messages]
        assert "Welcome, here is what to expect" in subjects
        assert subjects.count("Travel season: a few easy tips") == 1
        assert len(subjects) >= 4
    finally:
        live.close()
