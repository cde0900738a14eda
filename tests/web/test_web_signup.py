"""Signup and double opt-in through the Flask test client, real SQLite, real SMTP."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from web_fixtures import ZONE, Web, body_html, body_text, web_fixture  # noqa: F401

from drip.models import AuditEntry, Delivery, Enrollment


def test_the_form_lists_symptoms_red_flags_zones_and_versioned_consent(web: Web):
    page = web.client.get("/subscribe")
    assert page.status_code == 200
    html = page.text
    for label in ("Leg cramps at night", "Heavy or tired legs", "Sudden shortness of breath"):
        assert label in html
    assert 'name="symptom" value="night_cramps"' in html
    assert 'name="red_flag" value="breathless"' in html
    assert f'<option value="{ZONE}" selected>' in html  # the clinic's zone until JS runs
    assert 'name="consent" value="yes" required' in html
    assert 'name="consent_version" value="2026-06-01.' in html
    assert "Test Vein Clinic may keep my email address" in html
    assert "<fieldset" in html and "<legend>" in html and '<label for="email">' in html
    # no third-party anything; the one inline script is allowed by a per-request nonce
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'nonce-" in csp
    assert "http" not in csp and "https://" not in html.replace("https://clinic.test", "")
    assert page.headers["Referrer-Policy"] == "same-origin"
    cookie = page.headers["Set-Cookie"]
    assert "drip_csrf=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_signup_sends_only_a_minimal_confirmation_then_confirming_enrolls_and_sends(web: Web):
    answer = web.signup("pat@example.org", symptoms=("night_cramps", "heavy_legs"))
    assert answer.status_code == 200
    assert "Check your inbox" in answer.text
    (mail,) = web.sink.received
    assert mail.recipient == "pat@example.org"
    assert mail.subject == "Please confirm your email address"
    text, html = body_text(mail), body_html(mail)
    for echoed in ("Pat", "cramp", "Heavy", "night"):  # nothing the form received
        assert echoed not in text and echoed not in html
    assert "List-Unsubscribe" not in mail.data.decode()  # transactional
    sub = web.subscriber("pat@example.org")
    assert sub.status == "pending" and sub.confirmed_at is None
    assert sub.consent_at == web.clock.now and sub.consent_ip == "127.0.0.1"
    assert sub.consent_text_version.startswith("2026-06-01.")
    assert sub.consent_user_agent  # the test client sends one
    with Session(web.services.engine) as s:
        assert s.scalars(select(Enrollment)).all() == []  # nothing before confirming

    link = web.confirm_path("pat@example.org")
    page = web.client.get(link)
    assert page.status_code == 200 and "Yes, start my emails" in page.text
    assert web.subscriber("pat@example.org").status == "pending"  # a GET changes nothing

    web.clock.advance(minutes=5)
    done = web.client.post(link, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert done.status_code == 200 and "You are signed up" in done.text
    sub = web.subscriber("pat@example.org")
    assert sub.status == "active" and sub.confirmed_at == web.clock.now
    assert sub.confirm_ip == "10.1.2.3"
    # confirming ran the Sender for this subscriber: the first step is due at once
    assert [m.subject for m in web.sink.received][1:] == ["Welcome, here is what to expect"]
    result = web.project.cli("subscribers", "show", "pat@example.org")
    for line in ("consent_at", "consent_ip", "consent_user_agent", "confirm_ip"):
        assert line in result.output
    assert "10.1.2.3" in result.output and "2026-06-01." in result.output


def test_red_flags_show_urgent_advice_at_once_and_the_urgent_email_goes_on_confirm(web: Web):
    page = web.signup("flag@example.org", symptoms=(), red_flags=("breathless", "clot_signs"))
    assert page.status_code == 200
    html = page.text
    assert 'class="urgent" role="alert"' in html
    assert html.index("Call 911 now") < html.index("Get medical care today")  # worst first
    assert "Sudden shortness of breath or chest pain" in html
    assert "Pain and swelling in one leg can be a blood clot" in html
    assert html.index('class="urgent"') < html.index("check your inbox")
    assert [m.subject for m in web.sink.received] == ["Please confirm your email address"]
    web.client.post(web.confirm_path("flag@example.org"))
    assert [m.subject for m in web.sink.handler.to("flag@example.org")][1:] == [
        "Please read this today"
    ]


def test_same_answer_for_known_and_unknown_addresses(web: Web):
    web.signup("known@example.org")
    web.client.post(web.confirm_path("known@example.org"))
    web.clock.advance(hours=1)
    known = web.signup("known@example.org", symptoms=("heavy_legs",))
    unknown = web.signup("new@example.org")
    strip = lambda t: t.split("<main", 1)[1].split("</main>", 1)[0]  # noqa: E731
    assert known.status_code == unknown.status_code == 200
    assert strip(known.text) == strip(unknown.text)
    # the known, active address kept its answers, and got a preferences link instead
    assert web.subscriber("known@example.org").symptom_keys == {"night_cramps"}
    notice = web.sink.handler.to("known@example.org")[-1]
    assert notice.subject == "You are already signed up"
    assert "https://clinic.test/p/" in body_text(notice)


def test_one_confirmation_email_per_address_per_window(web: Web):
    for _ in range(3):
        assert web.signup("bomb@example.org").status_code == 200
    assert len(web.sink.handler.to("bomb@example.org")) == 1
    web.clock.advance(minutes=16)
    web.signup("bomb@example.org")
    assert len(web.sink.handler.to("bomb@example.org")) == 2


def test_resubscribing_resumes_without_resending(web: Web):
    web.signup("back@example.org")
    web.client.post(web.confirm_path("back@example.org"))
    assert web.client.post(web.confirm_path("back@example.org")).status_code == 200  # already
    sub = web.subscriber("back@example.org")
    from drip.tokens import UNSUBSCRIBE

    token = web.services.tokens.make(UNSUBSCRIBE, sub.public_id)
    assert web.client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    web.clock.advance(days=1)
    web.signup("back@example.org")
    assert web.subscriber("back@example.org").status == "unsubscribed"  # until confirmed
    web.client.post(web.confirm_path("back@example.org"))
    sub = web.subscriber("back@example.org")
    assert sub.status == "active" and sub.unsubscribed_at is None and sub.withdrawn_at is None
    subjects = [m.subject for m in web.sink.handler.to("back@example.org")]
    assert subjects.count("Welcome, here is what to expect") == 1
    with Session(web.services.engine) as s:
        steps = [(d.step_key, d.status) for d in s.scalars(select(Delivery))]
        actions = [a.action for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert steps == [("welcome", "sent")]
    assert actions.count("consent.given") == 2 and "subscriber.unsubscribed" in actions
