"""Bad input and attacks on the signup form: each gets a friendly page, nothing leaks."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from web_fixtures import ZONE, Web, body_html, body_text, make_web, web_fixture, web_project  # noqa: F401

from drip.web.options import Limit


def stored(web: Web) -> int:
    with web.services.engine.connect() as conn:
        return conn.execute(text("select count(*) from subscribers")).scalar_one()


def test_missing_forged_or_expired_csrf_tokens_store_nothing_and_show_the_form_again(web: Web):
    web.form()  # sets the cookie
    base = {"email": "x@example.org", "timezone": ZONE, "consent": "yes", "symptom": ["heavy_legs"]}
    for token in (None, "forged", web.services.secret):
        data = dict(base) if token is None else {**base, "csrf_token": token}
        page = web.client.post("/subscribe", data=data)
        assert page.status_code == 400
        assert "press “Sign me up” again" in page.text
        assert 'value="x@example.org"' in page.text  # their answers are kept
        assert 'value="heavy_legs" checked' in page.text
    assert stored(web) == 0 and not web.sink.received


def test_a_token_from_another_browser_or_a_foreign_origin_is_refused(web: Web):
    hidden = web.form()
    other = make_web(web.project, web.sink).client  # a fresh browser: its own cookie
    other.get("/subscribe")
    data = {**hidden, "email": "x@example.org", "timezone": ZONE, "consent": "yes"}
    assert other.post("/subscribe", data=data).status_code == 400
    evil = {"Origin": "https://evil.example"}
    assert web.client.post("/subscribe", data=data, headers=evil).status_code == 400
    assert stored(web) == 0
    # with the right token, the same browser gets through, and so does our own Origin
    ok = web.client.post("/subscribe", data=data, headers={"Origin": "https://clinic.test"})
    assert ok.status_code == 200 and stored(web) == 1


def test_the_snippet_posts_from_an_allowed_origin_without_a_token(tmp_path, sink):
    web = make_web(
        web_project(tmp_path, sink), sink, embed_origins=frozenset({"https://www.clinic.test"})
    )
    data = {"email": "snip@example.org", "consent": "yes", "symptom": ["night_cramps"]}
    page = web.client.post("/subscribe", data=data, headers={"Origin": "https://www.clinic.test"})
    assert page.status_code == 200 and "Check your inbox" in page.text
    sub = web.subscriber("snip@example.org")
    assert sub.timezone == ZONE  # no zone field: the clinic's
    assert (
        "frame-ancestors 'self' https://www.clinic.test" in page.headers["Content-Security-Policy"]
    )
    other = web.client.post(
        "/subscribe", data={**data, "email": "b@example.org"}, headers={"Origin": "https://x.test"}
    )
    assert other.status_code == 400 and web.subscriber("b@example.org") is None


def test_honeypot_gets_the_same_page_and_nothing_happens(web: Web, caplog):
    with caplog.at_level(logging.INFO, logger="drip.web"):
        page = web.signup("bot@example.org", red_flags=("clot_signs",), website="http://spam")
    assert page.status_code == 200 and "check your inbox" in page.text.lower()
    assert 'class="urgent"' in page.text  # a person who filled it by mistake still sees it
    assert stored(web) == 0 and not web.sink.received
    assert "honeypot" in caplog.text


def test_rate_limit_per_ip(tmp_path, sink):
    web = make_web(web_project(tmp_path, sink), sink, signups_per_ip=Limit(3, 3600))
    codes = [web.signup(f"p{i}@example.org").status_code for i in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    page = web.signup("p9@example.org")
    assert "Too many sign-ups" in page.text and stored(web) == 3
    other_ip = web.client.get("/subscribe", environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert other_ip.status_code == 200
    hidden = web.form()
    data = {**hidden, "email": "q@example.org", "timezone": ZONE, "consent": "yes"}
    ok = web.client.post("/subscribe", data=data, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert ok.status_code == 200 and stored(web) == 4


def test_x_forwarded_for_counts_only_behind_a_configured_proxy(tmp_path, sink):
    plain = make_web(web_project(tmp_path / "a", sink), sink)
    proxied = make_web(web_project(tmp_path / "b", sink), sink, trusted_proxies=1)
    for web, expected in ((plain, "127.0.0.1"), (proxied, "203.0.113.7")):
        hidden = web.form()
        data = {**hidden, "email": "fwd@example.org", "timezone": ZONE, "consent": "yes"}
        web.client.post("/subscribe", data=data, headers={"X-Forwarded-For": "203.0.113.7"})
        assert web.subscriber("fwd@example.org").consent_ip == expected


def test_rate_limit_per_address_still_answers_the_same(tmp_path, sink):
    web = make_web(web_project(tmp_path, sink), sink, signups_per_address=Limit(2, 3600))
    for _ in range(4):
        web.clock.advance(hours=1)  # past the one-email window each time
        page = web.signup("target@example.org")
        assert page.status_code == 200 and "Check your inbox" in page.text
    assert len(web.sink.handler.to("target@example.org")) == 2


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "", "Please enter your email address"),
        ("email", "not-an-address", "does not look like an email address"),
        ("email", "a@b", "does not look like an email address"),
        ("email", "pat@example.org\r\nBcc: victim@example.org", "does not look like"),
        ("email", "x" * 250 + "@example.org", "too long"),
        ("first_name", "N" * 101, "under 100 characters"),
        ("timezone", "../../etc/passwd", "choose your time zone"),
        ("timezone", "Mars/Olympus_Mons", "choose your time zone"),
        ("symptom", "no_such_symptom", "not on this form"),
        ("consent", "", "tick the box to agree"),
        ("consent_version", "1999-01-01.old", "wording of this agreement has changed"),
    ],
)
def test_bad_fields_get_a_friendly_message_and_nothing_is_stored(web: Web, field, value, message):
    fields = {"email": "ok@example.org", field: value}
    page = web.signup(**fields)
    assert page.status_code == 400
    assert message in page.text and 'class="errors" role="alert"' in page.text
    assert stored(web) == 0 and not web.sink.received


def test_a_body_over_the_limit_gets_a_friendly_413(web: Web):
    page = web.signup("big@example.org", first_name="x" * 20_000)
    assert page.status_code == 413 and "too much text" in page.text
    many = web.signup("many@example.org", symptom=["night_cramps"] * 50)
    assert many.status_code == 400
    assert stored(web) == 0


def test_cr_lf_and_html_in_the_name_reach_neither_headers_nor_markup(web: Web):
    name = "<b>Eve</b>\r\nBcc: victim@example.org <script>alert(1)</script>"
    page = web.signup("eve@example.org", first_name=name)
    assert page.status_code == 200
    sub = web.subscriber("eve@example.org")
    assert "\r" not in sub.first_name and "\n" not in sub.first_name
    web.client.post(web.confirm_path("eve@example.org"))
    welcome = web.sink.handler.to("eve@example.org")[-1]
    head = welcome.data.split(b"\r\n\r\n", 1)[0].decode()
    assert "Bcc" not in head and "victim" not in head and "Eve" not in head
    html = body_html(welcome)
    assert "<b>Eve</b>" not in html and "<script>" not in html
    assert "&lt;b&gt;Eve&lt;/b&gt;" in html
    assert "<b>Eve</b>" in body_text(welcome)  # plain text shows it as typed, harmlessly
    assert all(m.recipient == "eve@example.org" for m in web.sink.received)
    # and the form shown again escapes it too
    again = web.signup("eve2@example.org", first_name=name, consent="")
    assert "<b>Eve</b>" not in again.text and "&lt;b&gt;Eve&lt;/b&gt;" in again.text


def test_server_errors_show_a_friendly_page_and_are_logged(web: Web, caplog):
    with web.services.engine.begin() as conn:
        conn.execute(text("drop table subscriber_symptoms"))
    with caplog.at_level(logging.ERROR, logger="drip.web"):
        page = web.signup("err@example.org")
    assert page.status_code == 500
    assert "something went wrong on our side" in page.text
    assert "Traceback" not in page.text and "sqlite" not in page.text.lower()
    assert "Traceback" in caplog.text and "subscriber_symptoms" in caplog.text
    for path, code in (("/nope", 404), ("/u/", 404)):
        answer = web.client.get(path)
        assert answer.status_code == code and "Page not found" in answer.text
    assert web.client.put("/subscribe").status_code == 405


def test_smtp_failure_on_confirmation_is_retried_from_the_queue(web: Web):
    web.sink.handler.by_recipient["flaky@example.org"] = "tempfail"
    page = web.signup("flaky@example.org")
    assert page.status_code == 200 and not web.sink.received
    del web.sink.handler.by_recipient["flaky@example.org"]
    web.signup("flaky@example.org")  # inside the window: no second email is queued
    assert not web.sink.received
    web.clock.advance(minutes=1)  # the first retry is a minute later
    web.services.worker.run_once()
    assert len(web.sink.handler.to("flaky@example.org")) == 1
    web.services.worker.run_once()
    assert len(web.sink.handler.to("flaky@example.org")) == 1
