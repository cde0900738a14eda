"""End to end in a real headless browser: Playwright drives Debian's Chromium.

The real `drip serve` runs in a subprocess against a real SQLite file and the
real SMTP sink; `drip send` runs as the real command. Skipped when Chromium is
missing, unless DRIP_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, SECRET, summary
from mailsink import MailSink, free_port
from web_fixtures import body_text, web_project

from drip.tokens import UNSUBSCRIBE, Tokens

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LATER = "2030-01-07T15:00:00Z"  # a Monday, 09:00 in Chicago: inside every send window
MUCH_LATER = "2030-03-04T15:00:00Z"


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    reason = _browser_missing()
    if reason:
        if os.environ.get("DRIP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DRIP_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def wait_until_up(url: str, proc=None, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def served(tmp_path: Path, sink: MailSink):  # type: ignore[no-untyped-def]
    """`drip serve` in a subprocess on a free port.

    Emails carry https://clinic.test/... links (drip check insists on https); the
    test opens the same paths on this server, as a reverse proxy would serve them.
    """
    project = web_project(tmp_path, sink)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = project.popen("serve", "--host", "127.0.0.1", "--port", str(port))
    try:
        wait_until_up(url, proc)
        yield project, url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def link_in(mail, kind: str, url: str) -> str:  # type: ignore[no-untyped-def]
    """The email's /confirm/, /u/ or /p/ link, on the test server."""
    found = re.search(rf"https://clinic\.test(/{kind}/[A-Za-z0-9_.\-]+)", body_text(mail))
    assert found, body_text(mail)
    return url + found.group(1)


def test_sign_up_confirm_receive_and_unsubscribe_in_a_browser(browser, served, sink):
    project, url = served
    page = browser.new_page(timezone_id="Europe/London")
    page.set_default_timeout(90_000)  # a loaded 2-core CI machine is slow
    page.goto(f"{url}/subscribe")
    assert page.locator("#timezone").input_value() == "Europe/London"  # from the browser
    page.get_by_label("Your email address").fill("browser@example.org")
    page.get_by_label("Your first name").fill("Bea")
    page.get_by_label("Leg cramps at night").check()
    page.get_by_label("Heavy or tired legs").check()
    page.get_by_label("I agree that Test Vein Clinic").check()
    page.get_by_role("button", name="Sign me up").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()

    (confirmation,) = sink.handler.wait_for(1)
    assert confirmation.subject == "Please confirm your email address"
    page.goto(link_in(confirmation, "confirm", url))
    page.get_by_role("button", name="Yes, start my emails").click()
    page.get_by_role("heading", name="You are signed up").wait_for()

    result = project.run("send", "--now", LATER)
    assert result.returncode == 0, result.stderr
    subjects = [m.subject for m in sink.handler.to("browser@example.org")]
    assert "Welcome, here is what to expect" in subjects and len(subjects) >= 2

    page.goto(link_in(sink.handler.to("browser@example.org")[-1], "u", url))
    assert "Unsubscribe?" in page.content()  # the GET alone changes nothing
    page.get_by_role("button", name="Unsubscribe me").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()

    before = len(sink.received)
    result = project.run("send", "--now", MUCH_LATER)
    assert result.returncode == 0 and summary(result.stdout)["sent"] == 0, result.stdout
    assert len(sink.received) == before
    shown = project.run("subscribers", "show", "browser@example.org").stdout
    assert re.search(r"status\s+unsubscribed", shown) and "Chrome" in shown
    page.close()


def test_a_red_flag_signup_shows_the_urgent_advice_in_the_browser(browser, served, sink):
    _, url = served
    page = browser.new_page()
    page.set_default_timeout(90_000)  # a loaded 2-core CI machine is slow
    page.goto(f"{url}/subscribe")
    page.get_by_label("Your email address").fill("flag@example.org")
    page.get_by_label("Sudden shortness of breath or chest pain").check()
    page.get_by_label("I agree that Test Vein Clinic").check()
    page.get_by_role("button", name="Sign me up").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "Call 911 now" in alert.inner_text()
    assert "You told us: Sudden shortness of breath or chest pain" in alert.inner_text()
    page.close()


def test_ticking_a_warning_sign_shows_its_advice_at_once_before_any_submit(browser, served):
    """Chest pain ticked, consent not ticked: the advice is on the page, no submit needed."""
    _, url = served
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.set_default_timeout(90_000)
    page.goto(f"{url}/subscribe")
    chest = page.get_by_label("Sudden shortness of breath or chest pain")
    live = page.locator("#advice-breathless")
    assert live.get_attribute("aria-live") == "assertive"
    assert live.inner_text().strip() == ""  # nothing until the sign is ticked
    chest.check()
    live.get_by_text("Call 911 now. This can be a clot in the lung.").wait_for()
    assert "Call 911 now" in live.locator("h3").inner_text()
    assert page.url == f"{url}/subscribe"  # nothing was submitted
    assert not page.get_by_label("I agree that Test Vein Clinic").is_checked()
    # right under the box just ticked, and on screen without scrolling
    box, shown = chest.bounding_box(), live.bounding_box()
    assert box and shown and box["y"] < shown["y"] < box["y"] + box["height"] + 40
    assert shown["y"] + 60 < 844  # boxes are relative to the viewport
    # a second sign gets its own advice; unticking removes only that sign's
    page.get_by_label("One leg suddenly swollen, painful, warm or red").check()
    page.locator("#advice-clot_signs").get_by_text("Get medical care today").first.wait_for()
    chest.uncheck()
    assert live.inner_text().strip() == ""
    assert "blood clot" in page.locator("#advice-clot_signs").inner_text()
    assert page.get_by_role("alert").count() == 0  # no page-level alert: nothing submitted
    page.close()


def test_without_scripts_the_error_page_shows_the_advice_first(browser, served, sink):
    """No JavaScript, no consent: the server's error page opens with the advice."""
    _, url = served
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(f"{url}/subscribe")
    page.get_by_label("Your email address").fill("noscript@example.org")
    page.get_by_label("Sudden shortness of breath or chest pain").check()
    assert page.locator("#advice-breathless").inner_text().strip() == ""  # no script: none yet
    page.get_by_role("button", name="Sign me up").click()  # consent not ticked
    page.get_by_role("heading", name="Some of your answers need care now").wait_for()
    first = page.locator("main > *").first
    assert first.get_attribute("class") == "urgent" and first.get_attribute("role") == "alert"
    assert "Call 911 now. This can be a clot in the lung." in first.inner_text()
    errors = page.locator(".errors")
    assert "Please tick the box to agree" in errors.inner_text()
    above = page.evaluate(
        "() => !!(document.querySelector('.urgent').compareDocumentPosition("
        "document.querySelector('.errors')) & Node.DOCUMENT_POSITION_FOLLOWING)"
    )
    assert above
    assert page.get_by_label("Sudden shortness of breath or chest pain").is_checked()  # kept
    assert not sink.received
    context.close()


def test_one_click_post_with_raw_http_and_no_cookies(served, sink):
    project, url = served
    result = project.run(
        "subscribers", "add", "raw@example.org", "--symptoms", "night_cramps", "--confirmed"
    )
    assert result.returncode == 0, result.stderr
    shown = project.run("subscribers", "list").stdout
    assert "raw@example.org\tactive" in shown
    from sqlalchemy import create_engine, text

    engine = create_engine(project.database_url)
    with engine.connect() as conn:
        public_id = conn.execute(text("select public_id from subscribers")).scalar_one()
    engine.dispose()
    token = Tokens(SECRET).make(UNSUBSCRIBE, public_id)
    host, port = url.removeprefix("http://").split(":")
    for _ in range(2):  # idempotent
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request(
            "POST",
            f"/u/{token}",
            body="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = conn.getresponse()
        body = answer.read().decode()
        assert answer.status == 200, body
        assert answer.getheader("Location") is None and answer.getheader("Set-Cookie") is None
        assert "You are unsubscribed" in body
        conn.close()
    assert "raw@example.org\tunsubscribed" in project.run("subscribers", "list").stdout


def wait_for_messages(live, count: int, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while len(live.catcher.messages) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(live.catcher.messages) >= count


def test_the_demo_in_a_browser_sign_up_confirm_fast_forward_unsubscribe(browser, tmp_path):
    from drip.demo.live import LiveDemo

    live = LiveDemo(REPO / "tests" / "fixtures" / "web" / "campaigns.toml", tmp_path, port=0)
    thread = threading.Thread(target=live.run, kwargs={"scheduler": False}, daemon=True)
    thread.start()
    try:
        page = browser.new_page(timezone_id="America/Chicago")
        page.set_default_timeout(90_000)  # a loaded 2-core CI machine is slow
        page.goto(f"{live.url}/")
        page.get_by_role("heading", name="Demo mail catcher").wait_for()
        page.goto(f"{live.url}/subscribe")
        page.get_by_label("Your email address").fill("demo@patient.example")
        page.get_by_label("Leg cramps at night").check()
        page.get_by_label("I agree that Test Vein Clinic").check()
        page.get_by_role("button", name="Sign me up").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        wait_for_messages(live, 1)  # the mail worker sends it just after the page answers
        page.goto(f"{live.url}/demo/mail")
        frame = page.frame_locator("iframe")
        frame.locator('a[href*="/confirm/"]').first.click()
        page.get_by_role("button", name="Yes, start my emails").click()
        page.get_by_role("heading", name="You are signed up").wait_for()
        page.goto(f"{live.url}/demo/mail")
        for _ in range(3):  # fast-forward through the series
            page.get_by_role("button", name="Jump to the next email").click()
            page.get_by_role("heading", name="Demo mail catcher").wait_for()
        subjects = [m.subject for m in live.catcher.messages]
        assert subjects[0] == "Please confirm your email address"
        assert subjects[1:4] == [
            "Welcome, here is what to expect",
            "Why muscles tighten at night",
            "Simple things to try at home",
        ]
        page.frame_locator("iframe").get_by_role("link", name="Unsubscribe").click()
        page.get_by_role("button", name="Unsubscribe me").click()
        page.get_by_role("heading", name="You are unsubscribed").wait_for()
        page.close()
    finally:
        live.server.close()
        thread.join(timeout=10)
