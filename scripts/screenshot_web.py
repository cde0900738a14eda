"""Screenshots of the patient pages and the demo's mail catcher, for the README.

Runs the live demo (web app + mail catcher) on a free local port with the
shipped campaigns.toml, drives Debian's Chromium with Playwright, signs up as a
patient, confirms, and saves:
  docs/signup-desktop.png   the signup form at 1200 px wide
  docs/signup-phone.png     the signup form at 390 px wide (a phone)
  docs/signup-advice.png    a warning sign ticked: its advice, shown at once
  docs/mail-catcher.png     the first email of the series, in the mail catcher

    python3 scripts/screenshot_web.py [--config campaigns.toml] [--out docs]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

from drip.demo.live import LiveDemo

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "campaigns.toml")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        live = LiveDemo(args.config.resolve(), Path(tmp), port=0)
        thread = threading.Thread(target=live.run, kwargs={"scheduler": False}, daemon=True)
        thread.start()
        try:
            shoot(live, args.out)
        finally:
            live.server.close()
            thread.join(timeout=10)


def shoot(live: LiveDemo, out: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for name, width, height in (("desktop", 1200, 900), ("phone", 390, 844)):
            page = browser.new_page(
                viewport={"width": width, "height": height},
                device_scale_factor=1,
                timezone_id="America/New_York",
            )
            page.goto(f"{live.url}/subscribe")
            page.screenshot(path=str(out / f"signup-{name}.png"), full_page=True)
            print(f"wrote {out / f'signup-{name}.png'}")
            page.close()

        # a warning sign ticked: its advice appears at once, before any submit
        page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
        page.goto(f"{live.url}/subscribe")
        page.locator('input[name="red_flag"]').first.check()
        page.locator(".flag-advice.shown").first.wait_for()
        box = page.locator("fieldset.flags").bounding_box()
        assert box is not None
        top = box["y"] + page.evaluate("window.scrollY")  # boxes are viewport-relative
        clip = {"x": 0, "y": top - 8, "width": 390, "height": min(box["height"], 700) + 16}
        page.screenshot(path=str(out / "signup-advice.png"), full_page=True, clip=clip)
        print(f"wrote {out / 'signup-advice.png'}")
        page.close()

        page = browser.new_page(
            viewport={"width": 1200, "height": 900},
            device_scale_factor=1,
            timezone_id="America/New_York",
        )
        page.goto(f"{live.url}/subscribe")
        page.get_by_label("Your email address").fill("maria@patient.example")
        page.get_by_label("Your first name").fill("Maria")
        page.locator('input[name="symptom"]').first.check()
        page.locator('input[name="consent"]').check()
        page.get_by_role("button", name="Sign me up").click()
        page.get_by_text("Check your inbox").wait_for()
        page.goto(f"{live.url}/demo/mail")
        frame = page.frame_locator("iframe")
        with page.expect_navigation():
            frame.locator('a[href*="/confirm/"]').first.click()
        page.get_by_role("button", name="Yes, start my emails").click()
        page.get_by_text("You are signed up").wait_for()
        page.goto(f"{live.url}/demo/mail")
        if len(live.catcher.messages) < 2:  # the first step waits for the send window
            page.get_by_role("button", name="Jump to the next email").click()
        page.goto(f"{live.url}/demo/mail")
        page.frame_locator("iframe").locator("body").wait_for()
        page.screenshot(path=str(out / "mail-catcher.png"), full_page=False)
        print(f"wrote {out / 'mail-catcher.png'}")
        browser.close()


if __name__ == "__main__":
    main()
