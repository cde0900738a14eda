"""The live demo as a newcomer meets it: `drip demo` in a real process and a real
headless Chromium, and the mail catcher's pages through Flask's test client."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import FIXTURES
from flask.testing import FlaskClient
from mailsink import MailSink, free_port
from sqlalchemy.orm import Session
from test_web_browser import browser, wait_until_up  # noqa: F401
from web_fixtures import Web, web_fixture, web_project  # noqa: F401

from drip import enrollment, subscribers
from drip.demo.live import LiveDemo
from drip.models import Subscriber
from drip.tokens import CONFIRM, UNSUBSCRIBE

WEB_CONFIG = FIXTURES / "web" / "campaigns.toml"


def test_the_demo_console_shows_drips_lines_not_the_mail_servers(
    browser,  # noqa: F811
    tmp_path: Path,
    sink: MailSink,
):
    """A newcomer signs up, confirms and fast-forwards; the console then holds
    drip's own lines (each email sent), none of aiosmtpd's SMTP chatter."""
    project = web_project(tmp_path / "p", sink)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = project.popen("demo", "--weeks", "1", "--dir", str(tmp_path / "d"), "--port", str(port))
    try:
        wait_until_up(url, proc, timeout=90)
        page = browser.new_page(timezone_id="Europe/London")
        page.set_default_timeout(90_000)  # a loaded 2-core CI machine is slow
        page.goto(f"{url}/subscribe")
        page.get_by_label("Your email address").fill("newcomer@patient.example")
        page.get_by_label("Leg cramps at night").check()
        page.get_by_label("I agree that Test Vein Clinic").check()
        page.get_by_role("button", name="Sign me up").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        page.goto(f"{url}/demo/mail")
        for _ in range(100):  # the mail worker sends it just after the signup page answers
            if page.frame_locator("iframe").locator('a[href*="/confirm/"]').count():
                break
            page.wait_for_timeout(200)
            page.reload()
        page.frame_locator("iframe").locator('a[href*="/confirm/"]').first.click()
        page.get_by_role("button", name="Yes, start my emails").click()
        page.get_by_role("heading", name="You are signed up").wait_for()
        page.get_by_role("link", name="Back to the demo mail catcher").click()
        page.get_by_role("heading", name="Demo mail catcher").wait_for()
        for _ in range(2):
            page.get_by_role("button", name="Jump to the next email").click()
            page.get_by_role("heading", name="Demo mail catcher").wait_for()
        subjects = page.locator(".mail-list .subject").all_inner_texts()
        assert subjects[:2] == ["Why muscles tighten at night", "Welcome, here is what to expect"]
        # on to the end of the series: then the page says so instead of nothing
        note = page.get_by_role("status")
        for _ in range(10):
            page.get_by_role("button", name="Jump to the next email").click()
            page.get_by_role("heading", name="Demo mail catcher").wait_for()
            if note.count():
                break
        assert note.inner_text().startswith("There are no more emails to send")
        # times in the browser's (so the newcomer's) zone, named
        assert "(Europe/London)" in page.locator(".demo-bar").inner_text()
        page.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    console = out + err
    assert proc.returncode == 0, console
    assert "The live demo is running" in console
    assert console.count("drip send: 1 sent") >= 2, console  # drip's own lines stay
    for chatter in ("mail.log", "aiosmtpd", "Connection lost", "_handle_client", "alembic"):
        assert chatter not in console, console


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveDemo]:
    """The live demo, bound but not serving: its app through Flask's test client,
    its mail catcher a real SMTP server."""
    demo = LiveDemo(WEB_CONFIG, tmp_path / "live", port=0)
    try:
        yield demo
    finally:
        demo.close()


def add_patient(live: LiveDemo, address: str, zone: str, confirmed: bool = True) -> Subscriber:
    with Session(live.engine, expire_on_commit=False) as session:
        sub = subscribers.create(
            session,
            live.services.config,
            email=address,
            symptoms=["night_cramps"],
            now=live.clock(),
            timezone=zone,
            confirmed=confirmed,
        )
        enrollment.sync_subscriber(session, live.services.config, sub, live.clock())
        session.commit()
    return sub


def press(client: FlaskClient, button: str) -> str:
    """Press one of the catcher's clock buttons; the page it lands on."""
    page = client.get("/demo/mail").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post("/demo/advance", data={"csrf_token": token, "by": button})
    assert answer.status_code == 303, answer.text
    return client.get(answer.headers["Location"]).text


def visible(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_catcher_shows_times_in_the_patients_zone_with_utc_in_the_tooltip(live: LiveDemo):
    add_patient(live, "chicago@patient.example", "America/Chicago")
    page = press(live.app.test_client(), "next")
    welcome = live.catcher.messages[-1]
    assert welcome.subject == "Welcome, here is what to expect"
    there = welcome.at.astimezone(ZoneInfo("America/Chicago"))
    shown = f"{there:%a %d %b %H:%M} {there.tzname()}"  # CST or CDT, never UTC
    utc = f"{welcome.at.astimezone(UTC):%a %d %b %Y %H:%M} UTC"
    assert f'title="{utc}">{shown}</time>' in page
    assert "(America/Chicago)" in visible(page)  # the demo clock names its zone
    assert "UTC" not in visible(page)  # UTC only in the tooltips


def test_each_email_shows_in_its_own_patients_zone(live: LiveDemo):
    add_patient(live, "tokyo@patient.example", "Asia/Tokyo")
    add_patient(live, "denver@patient.example", "America/Denver", confirmed=False)
    client = live.app.test_client()
    press(client, "next")
    tokyo = live.catcher.messages[-1]
    assert tokyo.recipient == "tokyo@patient.example"
    page = client.get(f"/demo/mail/{tokyo.number}").text
    there = tokyo.at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert f">{there:%a %d %b %H:%M} JST</time>" in page
    assert "(Asia/Tokyo, the patient's time zone)" in visible(page)
    assert "(America/Denver)" in visible(page)  # the clock: the newest patient's zone


def test_jump_with_no_one_signed_up_says_to_sign_up_first(live: LiveDemo):
    page = press(live.app.test_client(), "next")
    assert "No one has signed up yet: open the sign-up form" in page
    assert live.catcher.messages == []


def test_jump_before_confirming_says_to_confirm_first(live: LiveDemo):
    add_patient(live, "pending@patient.example", "America/Chicago", confirmed=False)
    page = press(live.app.test_client(), "next")
    assert "Nothing is due yet: confirm the signup first" in page


def test_jump_past_the_last_email_says_there_are_no_more(live: LiveDemo):
    add_patient(live, "done@patient.example", "America/Chicago")
    client = live.app.test_client()
    notes = []
    for _ in range(10):
        before = len(live.catcher.messages)
        page = press(client, "next")
        note = re.search(r'role="status"><p><strong>([^<]+)</strong>', page)
        if note is None:  # an email arrived, and the page says nothing more
            assert len(live.catcher.messages) == before + 1
            continue
        notes.append(note.group(1))
        assert len(live.catcher.messages) == before
        break
    assert len(live.catcher.messages) >= 3  # welcome and the series came first
    assert notes == [
        "There are no more emails to send: each patient has had every email of their series, "
        "or has paused or left."
    ]
    # the other buttons move the clock without a note
    assert 'role="status"' not in press(client, "day")


def test_a_later_due_time_is_named_in_the_patients_zone(live: LiveDemo):
    from drip.demo.pages import nothing_sent

    due = datetime(2026, 6, 3, 15, 0, tzinfo=UTC)
    assert nothing_sent(live.services, due, "America/Chicago") == (
        "Nothing is due yet: the next email is due on Wednesday 03 June at 10:00 CDT."
    )


def test_after_confirming_a_link_leads_back_to_the_catcher(live: LiveDemo):
    sub = add_patient(live, "confirm@patient.example", "America/Chicago", confirmed=False)
    client = live.app.test_client()
    link = f"/confirm/{live.services.tokens.make(CONFIRM, sub.public_id)}"
    back = '<a href="/demo/mail">← Back to the demo mail catcher</a>'
    assert back in client.get(link).text
    done = client.post(link)
    assert "You are signed up" in done.text and back in done.text
    unsubscribe = f"/u/{live.services.tokens.make(UNSUBSCRIBE, sub.public_id)}"
    assert back in client.get(unsubscribe).text
    assert back not in client.get("/demo/mail").text  # not on the catcher itself


def test_the_production_app_has_no_link_to_a_catcher(web: Web):
    web.signup("prod@example.org")
    done = web.client.post(web.confirm_path("prod@example.org"))
    assert "You are signed up" in done.text
    assert "mail catcher" not in done.text and "back-link" not in done.text


def test_the_demo_index_names_symptoms_as_the_signup_form_does(tmp_path: Path):
    from drip.config import load_config
    from drip.demo import run_demo

    config = load_config(WEB_CONFIG)
    index = run_demo(WEB_CONFIG, tmp_path / "demo", weeks=1, echo=lambda _: None)
    html = index.read_text()
    headings = re.findall(r"<small>([^<]*)</small>", html)
    assert len(headings) == 5  # one per sample patient
    maria = headings[0].split(" · ")
    assert maria == [config.symptoms["night_cramps"], "America/Chicago"]
    lena = headings[-1].split(" · ")[0]
    first_flag = next(iter(config.red_flags.values()))
    assert lena == f"{config.symptoms['night_cramps']}, {first_flag.label}"
    for key in [*config.symptoms, *config.red_flags]:
        assert key not in visible(html), key
    # send times in each patient's zone, UTC in the tooltip
    assert re.search(r'title="[^"]+ UTC">Mon 01 Jun \d\d:\d\d CDT</time>', html)
