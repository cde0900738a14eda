"""The live demo as a newcomer meets it: `drip demo` in a real process and a real
headless Chromium, and the mail catcher's pages through Flask's test client."""

from __future__ import annotations

import signal
from pathlib import Path

from conftest import FIXTURES
from mailsink import MailSink, free_port
from test_web_browser import browser, wait_until_up  # noqa: F401
from web_fixtures import web_project

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
        page.goto(f"{url}/demo/mail")
        for _ in range(2):
            page.get_by_role("button", name="Jump to the next email").click()
            page.get_by_role("heading", name="Demo mail catcher").wait_for()
        subjects = page.locator(".mail-list .subject").all_inner_texts()
        assert subjects[:2] == ["Why muscles tighten at night", "Welcome, here is what to expect"]
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
