"""The plain pages: /healthz for monitors and load balancers, /privacy for patients."""

from __future__ import annotations

import html
import re

from web_fixtures import Web, web_fixture  # noqa: F401

from drip.web.consent import consent_text, consent_version


def test_health_answers_ok_in_plain_text_and_touches_nothing(web: Web):
    before = web.client.get("/subscribe").headers.get("Set-Cookie")
    answer = web.client.get("/healthz")
    assert answer.status_code == 200 and answer.text == "ok\n"
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert before is not None and "Set-Cookie" not in answer.headers  # no session for it
    assert web.client.post("/healthz").status_code == 405


def test_privacy_page_shows_the_wording_patients_agree_to(web: Web):
    page = web.client.get("/privacy")
    assert page.status_code == 200
    text = html.unescape(page.text)
    config = web.services.config
    assert consent_text(config) in text and f"Wording version {consent_version(config)}" in text
    assert '<meta name="robots" content="index">' in page.text  # a public page
    # no trackers or third-party assets: nothing loads from anywhere else
    assert not re.search(r"<script|<img|<iframe", page.text)
    assert not re.search(r'(?:src|href)="https?://', page.text)
    # the version on the page is the one a new signup's consent record stores
    web.signup("pat@example.org")
    sub = web.subscriber("pat@example.org")
    assert sub is not None and sub.consent_text_version == consent_version(config)


def test_every_patient_page_links_to_the_privacy_page(web: Web):
    page = web.client.get("/subscribe")
    assert 'href="/privacy"' in page.text and "How we use your answers" in page.text
