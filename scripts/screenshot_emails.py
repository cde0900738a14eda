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
    python3 scripts/screenshot_emails.py --index-only  # rewrite README.md, no pictures

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
DARK = ("06-compression-walking", "08-urgent")  # also shown under the dark setting
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
    Shot(
        "11-home-relief-clot",
        "Home relief, for a warning sign",
        "vein-health",
        "home-relief",
        ("clot_signs", "swelling"),
        "Day 7, for a patient who ticked signs of a clot in one leg, and swelling. The "
        "safety model in campaigns.toml ([caution]) holds back rubbing, heat and raising "
        "the legs, and the email says why first.",
    ),
)


def drip_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DRIP_CONFIG"] = str(REPO / "campaigns.toml")
    env.setdefault("DRIP_SECRET_KEY", "screenshot-only-secret-0123456789")
    env.setdefault("DRIP_DATABASE_URL", "sqlite://")
    return env


@dataclass(frozen=True)
class Rendered:
    html: Path
    subject: str
    preheader: str
    grade: float  # Flesch-Kincaid, measured as `drip check` does (the gated formula)
    words: int
    dale_chall: float  # New Dale-Chall score, shown next to it (drip.quality.reading_level)


def drip_preview(shot: Shot, fmt: str, out: Path | None = None) -> str:
    command = [sys.executable, "-m", "drip", "preview", shot.campaign, shot.step]
    command += ["--symptoms", ",".join(shot.symptoms), "--format", fmt]
    if out is not None:
        command += ["-o", str(out)]
    done = subprocess.run(
        command, check=True, env=drip_env(), cwd=REPO, capture_output=True, text=True
    )
    return done.stdout


def render(shot: Shot, folder: Path) -> Rendered:
    sys.path.insert(0, str(REPO))
    from drip.config import load_config
    from drip.quality import reading_level, reading_text

    out = folder / f"{shot.slug}.html"
    if shot.campaign:
        drip_preview(shot, "html", out)
        text = drip_preview(shot, "text").split("\n\n", 1)[1]  # after "Subject: ..."
        step = load_config(REPO / "campaigns.toml").campaign(shot.campaign).step(shot.step)
        subject, preheader = step.subject, step.preheader
    else:
        email = transactional(shot.step)
        out.write_text(email.html, encoding="utf-8")
        text, subject, preheader = email.text, "(set by the signup page)", ""
    level = reading_level(reading_text(text))
    return Rendered(out, subject, preheader, level.flesch_kincaid, level.words, level.dale_chall)


def transactional(template: str):  # -> drip.render.RenderedEmail
    """Render a signup-page email the way drip/web/mailer.py does: no name, no symptoms."""
    from drip.checks import preview_links
    from drip.config import Step, load_config
    from drip.render import Renderer, subscriber_context

    config = load_config(REPO / "campaigns.toml")
    step = Step(
        key=template,
        subject="(set by the signup page)",
        preheader="",
        template=template,
        delay=timedelta(0),
    )
    context = subscriber_context(
        config, first_name=None, symptoms=set(), links=preview_links(config)
    )
    context["confirm_url"] = f"{config.clinic.base_url}/confirm/TOKEN"
    return Renderer(config.templates_dir).render(step, context)


def guard(route, blocked: list[str]) -> None:  # type: ignore[no-untyped-def]
    url = route.request.url
    if url.startswith(("file:", "data:")):
        route.continue_()
    else:
        blocked.append(url)
        route.abort()


def screenshot(pages: list[tuple[Shot, Rendered]], chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written: list[Path] = []
    blocked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for label, width in WIDTHS.items():
                page = browser.new_page(viewport={"width": width, "height": 800})
                # an email must not load anything from the network: refuse and report it
                page.route("**/*", lambda route: guard(route, blocked))
                for shot, rendered in pages:
                    page.goto(rendered.html.as_uri())
                    target = OUT / f"{shot.slug}-{label}.png"
                    page.screenshot(path=str(target), full_page=True)
                    written.append(target)
                page.close()
            # the mail app's dark setting: prefers-color-scheme: dark
            page = browser.new_page(
                viewport={"width": WIDTHS["phone"], "height": 800}, color_scheme="dark"
            )
            page.route("**/*", lambda route: guard(route, blocked))
            for shot, rendered in pages:
                if shot.slug in DARK:
                    page.goto(rendered.html.as_uri())
                    target = OUT / f"{shot.slug}-phone-dark.png"
                    page.screenshot(path=str(target), full_page=True)
                    written.append(target)
            page.close()
        finally:
            browser.close()
    if blocked:
        raise SystemExit(f"emails tried to load from the network: {sorted(set(blocked))}")
    return written


def schedule_lines() -> list[str]:
    from drip.config import load_config

    config = load_config(REPO / "campaigns.toml")
    lines = [
        "## The schedule",
        "",
        "Days count from the day the patient confirms; each email then waits for the",
        "clinic's send window. Urgent advice goes out at once, at any hour.",
        "",
        "| Campaign | Day | Step | Who gets it | Subject | Preview text |",
        "|----------|-----|------|-------------|---------|--------------|",
    ]
    for campaign in config.campaigns:
        day = timedelta(0)
        for step in campaign.steps:
            day += step.delay
            who = step.when.describe() if step.when else campaign.audience.describe()
            who = who.replace("any of ", "anyone with: ").replace("none of ", "no one with: ")
            lines.append(
                f"| `{campaign.key}` | {day.days} | `{step.key}` | {who} | "
                f"{step.subject} | {step.preheader} |"
            )
    return [*lines, ""]


def dark_lines() -> list[str]:
    titles = {shot.slug: shot.title for shot in SHOTS}
    lines = [
        "## Dark mode",
        "",
        "Under a phone's or mail app's dark setting (Apple Mail, iOS Mail, Outlook for",
        "Mac, Thunderbird), the emails switch to dark colours, and every text keeps a",
        "contrast of at least 4.5:1 on its box (`tests/test_email_dark.py` measures it",
        "in Chromium). Apps that force their own dark colours (Gmail) ignore these styles.",
        "",
    ]
    for slug in DARK:
        lines += [f'<img src="{slug}-phone-dark.png" width="390" alt="{titles[slug]}, dark">', ""]
    return lines


def write_index(rendered: dict[str, Rendered]) -> Path:
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
        "Reading level, for the answers shown, measured as `drip check` does on the",
        "text part (footer included, links left out), by two formulas that disagree:",
        "",
        "- **FK**: Flesch-Kincaid US grade, from sentence length and syllables per word.",
        "  `drip check` fails an email above grade 8 by this formula.",
        "- **Dale-Chall**: the Dale-Chall score, from sentence length and the share of",
        "  words not on a list of about 3,000 words most 4th graders know, with its grade",
        "  band (under 5: grade 4 and below; 5-5.9: 5-6; 6-6.9: 7-8; 7-7.9: 9-10; 8-8.9:",
        "  11-12; 9-9.9: 13-15; 10 and over: 16 and above). textstat counts plurals and",
        "  other forms of listed words, numbers, names, and topic words a patient needs",
        "  (vein, stocking, compression) as hard words, so it reads high; it is shown,",
        "  not gated.",
        "",
        "| # | Email | Answers shown | FK grade | Dale-Chall | Words | Phone | Desktop |",
        "|---|-------|---------------|----------|------------|-------|-------|---------|",
    ]
    from drip.quality import dale_chall_grade

    for i, shot in enumerate(SHOTS, start=1):
        r = rendered[shot.slug]
        answers = ", ".join(f"`{s}`" for s in shot.symptoms) or "none"
        band = dale_chall_grade(r.dale_chall).removeprefix("grade ")
        lines.append(
            f"| {i} | {shot.title} | {answers} | {r.grade} | {r.dale_chall} ({band}) | "
            f"{r.words} | [phone]({shot.slug}-phone.png) | [desktop]({shot.slug}-desktop.png) |"
        )
    lines.append("")
    lines += schedule_lines()
    for shot in SHOTS:
        r = rendered[shot.slug]
        where = f"`{shot.campaign}/{shot.step}`" if shot.campaign else f"`{shot.step}.mjml`"
        lines += [f"## {shot.title}", "", f"{where}. {shot.note}", ""]
        if shot.campaign:
            lines += [f"Subject: **{r.subject}**  ", f"Preview text: {r.preheader}", ""]
        lines += [
            f'<img src="{shot.slug}-phone.png" width="390" alt="{shot.title}, phone width">',
            "",
            f"[Desktop width]({shot.slug}-desktop.png)",
            "",
        ]
    lines += dark_lines()
    index = OUT / "README.md"
    index.write_text("\n".join(lines), encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium binary")
    parser.add_argument("--only", action="append", default=[], help="slug fragment to render")
    parser.add_argument(
        "--index-only", action="store_true", help="rewrite README.md only, no screenshots"
    )
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rendered = {shot.slug: render(shot, Path(tmp)) for shot in SHOTS}
        shots = [s for s in SHOTS if not args.only or any(o in s.slug for o in args.only)]
        pages = [] if args.index_only else [(s, rendered[s.slug]) for s in shots]
        written = screenshot(pages, args.chromium) if pages else []
    for path in written:
        print(f"{path.relative_to(REPO)}  {path.stat().st_size // 1024} KB")
    print(f"{write_index(rendered).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
