#!/usr/bin/env python3
"""Render every shipped email to PNG at phone and desktop widths, for docs/emails/.

Each drip step is rendered with `drip preview CAMPAIGN STEP --symptoms ... --format
html`, exactly as `drip` would send it to a patient with those answers. The
confirmation and already-subscribed emails (not campaign steps: the web signup
sends them) are rendered with drip's Renderer, as drip/web/mailer.py does.
Headless Chromium then takes a full-page screenshot of each at 390px (a phone) and
1200px (a desktop) wide, and docs/emails/README.md is rewritten to link them all.

Usage, from the repository root:

    python3 scripts/screenshot_emails.py              # all emails, both widths
    python3 scripts/screenshot_emails.py --only welcome
    python3 scripts/screenshot_emails.py --chromium /path/to/chromium

Needs playwright from PyPI and a Chromium binary (default /usr/bin/chromium);
playwright's own browser download is not needed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "emails"
WIDTHS = {"phone": 390, "desktop": 1200}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class Shot:
    slug: str  # file name stem
    title: str  # heading in the README
    campaign: str  # "" for the confirmation email
    step: str
    symptoms: tuple[str, ...]
    note: str  # what this rendering shows


SHOTS = (
    Shot(
        "01-welcome",
        "Welcome",
        "vein-health",
        "welcome",
        ("night_cramps",),
        "Day 0, everyone. What to expect, how often, how to stop.",
    ),
    Shot(
        "02-see-doctor-early",
        "Check-up, sent early",
        "vein-health",
        "see-doctor-early",
        ("skin_changes", "slow_sore"),
        "Day 1, only for skin changes, a slow sore, calf pain on walking or a warning "
        "sign. Shown for a patient with skin changes and a slow-healing sore.",
    ),
    Shot(
        "03-causes",
        "Causes",
        "vein-health",
        "causes",
        ("night_cramps", "heavy_legs", "walking_cramps", "over_50"),
        "Day 3. Shown with night cramps, heavy legs, calf pain on walking (the "
        "narrowed-arteries warning) and age over 50.",
    ),
    Shot(
        "04-home-relief",
        "Home relief",
        "vein-health",
        "home-relief",
        ("swelling", "standing_job"),
        "Day 7. Shown with swelling and a job on your feet all day.",
    ),
    Shot(
        "05-compression-swelling",
        "Compression, for swelling",
        "vein-health",
        "compression",
        ("swelling",),
        "Day 11. Shown with swelling: the swelling paragraph and the safety check.",
    ),
    Shot(
        "06-compression-walking",
        "Compression, for calf pain on walking",
        "vein-health",
        "compression",
        ("walking_cramps",),
        "Day 11. Shown with calf pain on walking: see a doctor before any stockings.",
    ),
    Shot(
        "07-see-doctor",
        "When to get a check-up",
        "vein-health",
        "see-doctor",
        ("night_cramps", "visible_veins"),
        "Day 15, for everyone who did not get the early check-up email.",
    ),
    Shot(
        "08-urgent",
        "Urgent advice",
        "urgent-care",
        "advice",
        ("clot_signs", "chest_breathing"),
        "Sent at once to anyone who ticks a warning sign; one block per sign ticked. "
        "Shown with signs of a clot in one leg and sudden chest pain or breathlessness.",
    ),
    Shot(
        "09-confirm",
        "Please confirm (sent by the signup page)",
        "",
        "confirm",
        (),
        "The double opt-in email. It echoes nothing the form received.",
    ),
    Shot(
        "10-already-subscribed",
        "Already signed up (sent by the signup page)",
        "",
        "already_subscribed",
        (),
        "Sent instead of a confirmation when the address is already subscribed, so the "
        "signup page answers the same either way.",
    ),
)


def drip_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DRIP_CONFIG"] = str(REPO / "campaigns.toml")
    env.setdefault("DRIP_SECRET_KEY", "screenshot-only-secret-0123456789")
    env.setdefault("DRIP_DATABASE_URL", "sqlite://")
    return env


def email_html(shot: Shot, folder: Path) -> Path:
    out = folder / f"{shot.slug}.html"
    if shot.campaign:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "drip",
                "preview",
                shot.campaign,
                shot.step,
                "--symptoms",
                ",".join(shot.symptoms),
                "--format",
                "html",
                "-o",
                str(out),
            ],
            check=True,
            env=drip_env(),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
    else:
        out.write_text(transactional_html(shot.step), encoding="utf-8")
    return out


def transactional_html(template: str) -> str:
    """Render a signup-page email the way drip/web/mailer.py does: no name, no symptoms."""
    sys.path.insert(0, str(REPO))
    from drip.checks import preview_links
    from drip.config import Step, load_config
    from drip.render import Renderer, subscriber_context

    config = load_config(REPO / "campaigns.toml")
    step = Step(
        key=template,
        subject="Please confirm your email address",
        preheader="One click and you are signed up",
        template=template,
        delay=timedelta(0),
    )
    context = subscriber_context(
        config, first_name=None, symptoms=set(), links=preview_links(config)
    )
    context["confirm_url"] = f"{config.clinic.base_url}/confirm/TOKEN"
    return Renderer(config.templates_dir).render(step, context).html


def screenshot(pages: list[tuple[Shot, Path]], chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for label, width in WIDTHS.items():
                page = browser.new_page(viewport={"width": width, "height": 800})
                # emails must not load anything from the network; fail loudly if one does
                page.route(
                    "**/*",
                    lambda route: (
                        route.continue_()
                        if route.request.url.startswith(("file:", "data:"))
                        else route.abort()
                    ),
                )
                for shot, html in pages:
                    page.goto(html.as_uri())
                    target = OUT / f"{shot.slug}-{label}.png"
                    page.screenshot(path=str(target), full_page=True)
                    written.append(target)
                page.close()
        finally:
            browser.close()
    return written


def write_index() -> Path:
    lines = [
        "# The shipped email series",
        "",
        "Every email in `campaigns.toml` and `templates/emails/`, as a patient with the",
        "listed answers would get it. Regenerate these pictures after any template change:",
        "",
        "    python3 scripts/screenshot_emails.py",
        "",
        "Each email is shown at phone width (390px) and desktop width (1200px). Subject",
        "lines and preview text never name a condition: they show on lock screens.",
        "",
        "| # | Email | Answers shown | Phone | Desktop |",
        "|---|-------|---------------|-------|---------|",
    ]
    for i, shot in enumerate(SHOTS, start=1):
        answers = ", ".join(f"`{s}`" for s in shot.symptoms) or "none"
        lines.append(
            f"| {i} | {shot.title} | {answers} | "
            f"[phone]({shot.slug}-phone.png) | [desktop]({shot.slug}-desktop.png) |"
        )
    lines.append("")
    for shot in SHOTS:
        where = f"`{shot.campaign}/{shot.step}`" if shot.campaign else f"`{shot.step}.mjml`"
        lines += [
            f"## {shot.title}",
            "",
            f"{where}. {shot.note}",
            "",
            f'<img src="{shot.slug}-phone.png" width="390" alt="{shot.title}, phone width">',
            "",
            f"[Desktop width]({shot.slug}-desktop.png)",
            "",
        ]
    index = OUT / "README.md"
    index.write_text("\n".join(lines), encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium binary")
    parser.add_argument("--only", action="append", default=[], help="slug fragment to render")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    shots = [s for s in SHOTS if not args.only or any(o in s.slug for o in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        pages = [(shot, email_html(shot, Path(tmp))) for shot in shots]
        written = screenshot(pages, args.chromium)
    for path in written:
        print(f"{path.relative_to(REPO)}  {path.stat().st_size // 1024} KB")
    print(f"{write_index().relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
