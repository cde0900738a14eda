"""Warning-sign advice is never held back by the form.

Every answer to a signup or preferences post, whatever went wrong (consent, the
address, the CSRF token, the rate limit, the honeypot, a body too big, a server
error), shows the advice for the warning signs ticked, and shows it first.
Through the Flask test client on a real SQLite file; the browser side (advice
as a box is ticked, and with scripts off) is in test_web_browser.py.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from web_fixtures import ZONE, Web, make_web, web_fixture, web_project  # noqa: F401

from drip.web.options import Limit

CLOT = "Pain and swelling in one leg can be a blood clot. Get medical care today."
BREATH = "Call 911 now. This can be a clot in the lung."
ADVICE_HEADING = "Some of your answers need care now"


def first(page_text: str, *after: str) -> None:
    """The advice box opens the page's main content, before each of `after`."""
    main = page_text[page_text.index('<main id="main"') :]
    start = main.index('class="urgent"')
    assert (
        re.sub(r"\s+", " ", main[:start]).strip().endswith('<main id="main" class="wrap"> <section')
    )
    for phrase in after:
        assert phrase in main, phrase
        assert start < main.index(phrase), phrase


def test_missing_consent_shows_the_advice_above_the_errors(web: Web):
    page = web.signup("pat@example.org", red_flags=("breathless",), consent="")
    assert page.status_code == 400
    assert ADVICE_HEADING in page.text and BREATH in page.text
    first(page.text, 'class="errors"', "tick the box to agree", "<form")
    assert CLOT not in page.text.split("<form")[0]  # only the signs ticked, above the form


def test_a_bad_address_shows_every_ticked_sign_most_urgent_first(web: Web):
    page = web.signup("not-an-address", red_flags=("clot_signs", "breathless"))
    assert page.status_code == 400
    first(page.text, 'class="errors"', "does not look like an email address")
    top = page.text.split("<form")[0]
    assert top.index(BREATH) < top.index(CLOT)


def test_a_failed_csrf_check_shows_the_advice_before_asking_to_press_again(web: Web):
    web.form()  # the cookie
    data = {
        "email": "x@example.org",
        "timezone": ZONE,
        "consent": "yes",
        "red_flag": ["clot_signs"],
        "csrf_token": "forged",
    }
    page = web.client.post("/subscribe", data=data)
    assert page.status_code == 400
    first(page.text, "press “Sign me up” again", "<form")
    assert CLOT in page.text
    with web.services.engine.connect() as conn:
        assert conn.execute(text("select count(*) from subscribers")).scalar_one() == 0


def test_the_rate_limit_page_shows_the_advice_first(tmp_path, sink):
    web = make_web(web_project(tmp_path, sink), sink, signups_per_ip=Limit(1, 3600))
    assert web.signup("one@example.org").status_code == 200
    page = web.signup("two@example.org", red_flags=("breathless",))
    assert page.status_code == 429
    first(page.text, "Too many sign-ups")
    assert BREATH in page.text


def test_the_honeypot_page_shows_the_advice_first(web: Web):
    page = web.signup("bot@example.org", red_flags=("clot_signs",), website="http://x")
    assert page.status_code == 200
    first(page.text, "check your inbox")
    assert CLOT in page.text


def test_a_body_too_big_to_read_shows_the_advice_for_every_sign(web: Web):
    page = web.signup("big@example.org", red_flags=("clot_signs",), first_name="x" * 20_000)
    assert page.status_code == 413
    first(page.text, "That was too much text")
    assert "If you ticked a warning sign, do not wait" in page.text
    for advice in (CLOT, BREATH, "See a doctor soon"):  # open_sore: the level's own words
        assert advice in page.text


def test_a_server_error_on_signup_shows_the_advice_first(web: Web):
    with web.services.engine.begin() as conn:
        conn.execute(text("drop table subscriber_symptoms"))
    page = web.signup("err@example.org", red_flags=("breathless",))
    assert page.status_code == 500
    first(page.text, "something went wrong on our side")
    assert BREATH in page.text and CLOT not in page.text


def test_no_advice_box_without_a_ticked_sign(web: Web):
    page = web.signup("pat@example.org", consent="")
    assert page.status_code == 400 and 'class="urgent"' not in page.text


def test_the_form_carries_each_signs_advice_for_the_script_and_lets_the_server_check(web: Web):
    page = web.client.get("/subscribe")
    assert page.status_code == 200
    blocks = re.findall(r'<template data-flag="([a-z_]+)">', page.text)
    assert blocks == ["clot_signs", "breathless", "open_sore"]  # each under its own box
    for key in blocks:  # box, then the empty live region its advice goes into
        assert re.search(
            rf'<input type="checkbox" id="flag-{key}" name="red_flag" value="{key}" '
            rf'aria-describedby="advice-{key}">\s*<label[^>]*>[^<]*</label>\s*</div>\s*'
            rf'<div class="flag-advice" id="advice-{key}" aria-live="assertive"></div>',
            page.text,
        ), key
    assert BREATH in page.text.split('<template data-flag="breathless">')[1]
    # the browser's own checks would stop a person without scripts before any advice
    assert re.search(r'<form [^>]*class="signup" novalidate>', page.text)
    nonce = re.search(r"'nonce-([^']+)'", page.headers["Content-Security-Policy"]).group(1)
    assert f'src="/static/advice.js" nonce="{nonce}"' in page.text
    script = web.client.get("/static/advice.js")
    assert script.status_code == 200
    for call in ("http", "fetch(", "XMLHttpRequest", "import("):  # nothing loaded from anywhere
        assert call not in script.text


def _preferences(web: Web) -> str:
    from drip.tokens import PREFERENCES

    page = web.signup("pref@example.org")
    assert page.status_code == 200
    web.client.post(web.confirm_path("pref@example.org"))
    sub = web.subscriber("pref@example.org")
    return "/p/" + web.services.tokens.make(PREFERENCES, sub.public_id)


def test_the_preferences_form_shows_the_advice_first_after_a_failed_csrf_check(web: Web):
    path = _preferences(web)
    page = web.client.get(path)
    assert '<template data-flag="clot_signs">' in page.text
    data = {
        "action": "answers",
        "symptom": ["night_cramps"],
        "red_flag": ["clot_signs"],
        "timezone": ZONE,
        "csrf_token": "forged",
    }
    page = web.client.post(path, data=data)
    assert page.status_code == 400
    first(page.text, "Please make your change again")
    assert CLOT in page.text
    data.update(web.form(path), timezone="Mars/X")  # a good token this time
    bad_zone = web.client.post(path, data=data)
    assert bad_zone.status_code == 400
    first(bad_zone.text, "choose your time zone")
