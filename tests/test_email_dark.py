"""Dark mode: the emails in headless Chromium under each colour scheme.

The layout declares `color-scheme: light dark` and carries dark styles in a
`prefers-color-scheme: dark` media query. Here real emails with every kind of
box (note, caution, alarm) are opened in Chromium with the scheme emulated, and
the colours the browser computes are measured: under dark, the page and boxes
are dark and the text light; under both, every text is at least 4.5:1 (WCAG AA)
on the colour behind it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from drip.checks import preview_links
from drip.config import load_config
from drip.render import Renderer, subscriber_context

REPO = Path(__file__).parent.parent
CHROMIUM = "/usr/bin/chromium"

# What the patient reads, and where: (name, CSS selector of text elements)
TEXTS = (
    ("body text", ".dm-card .dm-text p"),
    ("heading", ".dm-card .dm-text h2"),
    ("note box", ".dm-note td p"),
    ("caution box", ".dm-caution td p"),
    ("alarm box", ".dm-alarm td p"),
    ("footer", ".dm-foot .dm-text p"),
    ("footer link", ".dm-foot .dm-text a"),
)

# Each element's text colour and the colour actually behind it (the nearest
# ancestor with a background that is not transparent).
MEASURE = """
(selector) => Array.from(document.querySelectorAll(selector)).map((el) => {
  let bg = null;
  for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
    const c = getComputedStyle(node).backgroundColor;
    if (c && c !== "transparent" && !/rgba\\(.*,\\s*0\\)$/.test(c)) { bg = c; break; }
  }
  return [getComputedStyle(el).color, bg];
})
"""


def _rgb(css: str) -> tuple[int, int, int]:
    r, g, b = (int(float(x)) for x in re.findall(r"[\d.]+", css)[:3])
    return r, g, b


def luminance(css: str) -> float:
    def channel(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in _rgb(css))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
    else:
        reason = "" if (Path(CHROMIUM).exists() or shutil.which("chromium")) else "no Chromium"
    if reason:
        if os.environ.get("DRIP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DRIP_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def emails() -> list[str]:
    """Two emails that between them carry every kind of box."""
    config = load_config(REPO / "campaigns.toml")
    renderer = Renderer(config.templates_dir)
    found = []
    for step, answers in (
        ("compression", {"walking_cramps", "swelling"}),
        ("home-relief", {"clot_signs", "swelling", "pregnancy"}),
    ):
        campaign = config.campaign("vein-health")
        context = subscriber_context(
            config,
            first_name="Alex",
            symptoms=answers,
            links=preview_links(config),
            campaign=campaign,
            step=campaign.step(step),
        )
        found.append(renderer.render(campaign.step(step), context).html)
    return found


def measure(browser, html: str, scheme: str) -> tuple[str, dict[str, list[list[str]]]]:
    page = browser.new_page(color_scheme=scheme, viewport={"width": 700, "height": 900})
    try:
        page.set_content(html)
        body = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        return body, {name: page.evaluate(MEASURE, sel) for name, sel in TEXTS}
    finally:
        page.close()


def test_the_layout_declares_both_schemes(emails):
    for html in emails:
        assert '<meta name="color-scheme" content="light dark"' in html
        assert '<meta name="supported-color-schemes" content="light dark"' in html
        assert "@media (prefers-color-scheme: dark)" in html


def test_dark_scheme_gives_dark_boxes_and_light_text(browser, emails):
    seen = set()
    for html in emails:
        body, texts = measure(browser, html, "dark")
        assert luminance(body) < 0.02, body  # not the glaring white (or light grey) page
        for name, found in texts.items():
            for color, background in found:
                seen.add(name)
                assert background is not None, name
                assert luminance(background) < 0.05, (name, background)
                assert luminance(color) > 0.4, (name, color)
                assert contrast(color, background) >= 4.5, (name, color, background)
    assert seen == {name for name, _ in TEXTS}  # every kind of box was measured


def test_light_scheme_is_unchanged_and_readable(browser, emails):
    for html in emails:
        body, texts = measure(browser, html, "light")
        assert body == "rgb(233, 238, 242)"  # the layout's #e9eef2
        for name, found in texts.items():
            assert found, name
            for color, background in found:
                assert luminance(background) > 0.7, (name, background)
                assert contrast(color, background) >= 4.5, (name, color, background)
