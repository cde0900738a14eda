"""The links in emails: confirmation, one-click unsubscribe, preferences."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from conftest import summary
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session
from web_fixtures import Web, body_text, web_fixture  # noqa: F401

from drip.models import AuditEntry, Enrollment
from drip.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE
from drip.web.options import OptionsError, WebOptions

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def active(web: Web, address: str = "pat@example.org", **kw) -> str:  # type: ignore[no-untyped-def]
    """Sign up and confirm; returns the subscriber's public id."""
    web.signup(address, **kw)
    web.client.post(web.confirm_path(address))
    sub = web.subscriber(address)
    assert sub is not None and sub.status == "active"
    return sub.public_id


def enrollments(web: Web) -> dict[str, str]:
    with Session(web.services.engine) as s:
        return {e.campaign_key: e.state for e in s.scalars(select(Enrollment))}


def audit_actions(web: Web) -> list[str]:
    with Session(web.services.engine) as s:
        return [a.action for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_one_click_post_unsubscribes_with_no_cookie_or_csrf_and_answers_200(web: Web):
    pid = active(web)
    url = f"/u/{web.services.tokens.make(UNSUBSCRIBE, pid)}"
    web.client.delete_cookie("drip_csrf")
    answer = web.client.post(url, data=ONE_CLICK)
    assert answer.status_code == 200 and "You are unsubscribed" in answer.text
    assert "Set-Cookie" not in answer.headers and "Location" not in answer.headers
    sub = web.subscriber("pat@example.org")
    assert sub.status == "unsubscribed"
    assert sub.unsubscribed_at == sub.withdrawn_at == web.clock.now
    assert set(enrollments(web).values()) == {"left"}
    again = web.client.post(url, data=ONE_CLICK)  # idempotent
    assert again.status_code == 200
    assert audit_actions(web).count("subscriber.unsubscribed") == 1
    # takes effect before the next send: nothing more goes out
    before = len(web.sink.received)
    web.clock.advance(days=10)
    result = web.project.cli("send", "--now", web.clock.now.isoformat())
    assert summary(result.output)["sent"] == 0 and len(web.sink.received) == before


def test_get_of_the_unsubscribe_link_only_shows_a_button(web: Web):
    pid = active(web)
    url = f"/u/{web.services.tokens.make(UNSUBSCRIBE, pid)}"
    page = web.client.get(url)
    assert page.status_code == 200
    assert '<form method="post">' in page.text and "Unsubscribe me" in page.text
    assert web.subscriber("pat@example.org").status == "active"
    done = web.client.post(url, data={"List-Unsubscribe": "One-Click", "button": "unsubscribe"})
    assert done.status_code == 200
    assert web.subscriber("pat@example.org").status == "unsubscribed"
    assert "You are unsubscribed" in web.client.get(url).text


def test_forged_damaged_and_wrong_purpose_tokens_change_nothing(web: Web):
    pid = active(web)
    good = web.services.tokens.make(UNSUBSCRIBE, pid)
    forged = URLSafeTimedSerializer("another-secret-0123456789", salt=UNSUBSCRIBE).dumps(pid)
    for path in (
        f"/u/{good[:-3]}xyz",
        f"/u/{forged}",
        f"/u/{web.services.tokens.make(PREFERENCES, pid)}",  # right id, wrong purpose
        f"/p/{good}",
        f"/confirm/{good}",
        "/u/" + "a" * 5000,
    ):
        for method in (web.client.get, web.client.post):
            page = method(path, data=ONE_CLICK)
            assert page.status_code == 400, path
            assert "This link does not work" in page.text and "Traceback" not in page.text
    assert web.subscriber("pat@example.org").status == "active"


def test_expired_and_reused_confirmation_links_change_nothing(web: Web):
    web.signup("late@example.org")
    sub = web.subscriber("late@example.org")

    old = web.services.tokens.make(CONFIRM, sub.public_id)
    web.clock.advance(days=8)
    page = web.client.post(f"/confirm/{old}")
    assert page.status_code == 410 and "This link has expired" in page.text
    assert web.subscriber("late@example.org").status == "pending"
    web.clock.advance(days=-8)

    link = web.confirm_path("late@example.org")
    assert web.client.post(link).status_code == 200
    again = web.client.post(link)
    assert again.status_code == 200 and "already signed up" in again.text
    # after unsubscribing, the old confirmation link cannot sign them back up
    token = web.services.tokens.make(UNSUBSCRIBE, sub.public_id)
    web.client.post(f"/u/{token}", data=ONE_CLICK)
    reused = web.client.post(link)
    assert reused.status_code == 410 and "no longer valid" in reused.text
    assert web.subscriber("late@example.org").status == "unsubscribed"


def prefs(web: Web, pid: str) -> tuple[str, dict[str, str]]:
    url = f"/p/{web.services.tokens.make(PREFERENCES, pid)}"
    return url, web.form(url)


def test_preferences_change_answers_and_re_evaluate_campaigns(web: Web):
    pid = active(web, symptoms=("night_cramps",))
    url, form = prefs(web, pid)
    page = web.client.get(url)
    assert 'value="night_cramps" checked' in page.text and "Leg health" in page.text
    answer = web.client.post(
        url, data={**form, "action": "answers", "symptom": [], "timezone": "Europe/London"}
    )
    assert answer.status_code == 303 and "done=answers" in answer.headers["Location"]
    assert enrollments(web) == {"leg-health": "left"}
    sub = web.subscriber("pat@example.org")
    assert sub.symptom_keys == set() and sub.timezone == "Europe/London"
    # ticking a red flag here shows the advice and sends the urgent email now
    flagged = web.client.post(
        url, data={**form, "action": "answers", "red_flag": ["clot_signs"], "timezone": "UTC"}
    )
    assert flagged.status_code == 200 and 'class="urgent"' in flagged.text
    assert web.sink.received[-1].subject == "Please read this today"


def test_pause_for_weeks_then_resume(web: Web):
    pid = active(web)
    url, form = prefs(web, pid)
    assert web.client.post(url, data={**form, "action": "pause", "weeks": "2"}).status_code == 303
    sub = web.subscriber("pat@example.org")
    assert sub.paused_until == web.clock.now.replace(day=15)
    assert "paused until June 15, 2026" in web.client.get(url).text
    web.clock.advance(days=3)
    before = len(web.sink.received)
    web.project.cli("send", "--now", web.clock.now.isoformat())
    assert len(web.sink.received) == before  # paused: the next step waits
    bad = web.client.post(url, data={**form, "action": "pause", "weeks": "999"})
    assert bad.status_code == 400
    web.client.post(url, data={**form, "action": "resume"})
    assert web.subscriber("pat@example.org").paused_until is None
    web.project.cli("send", "--now", web.clock.now.isoformat())
    assert web.sink.received[-1].subject == "Why muscles tighten at night"


def test_leaving_one_campaign_sticks_through_answer_changes_until_rejoined(web: Web):
    pid = active(web, symptoms=("night_cramps",))
    url, form = prefs(web, pid)
    web.client.post(url, data={**form, "action": "leave", "campaign": "leg-health"})
    assert enrollments(web) == {"leg-health": "opted_out"}
    web.client.post(
        url,
        data={**form, "action": "answers", "symptom": ["heavy_legs"], "timezone": "UTC"},
    )
    assert enrollments(web) == {"leg-health": "opted_out"}
    assert "stopped by you" in web.client.get(url).text
    web.client.post(url, data={**form, "action": "join", "campaign": "leg-health"})
    assert enrollments(web) == {"leg-health": "active"}
    assert web.client.post(url, data={**form, "action": "stop"}).status_code == 200
    assert web.subscriber("pat@example.org").status == "unsubscribed"


def test_preferences_need_the_form_token(web: Web):
    pid = active(web)
    url, _ = prefs(web, pid)
    page = web.client.post(url, data={"action": "stop"})
    assert page.status_code == 400 and "open too long" in page.text
    assert web.subscriber("pat@example.org").status == "active"


def test_an_old_preferences_link_shows_no_answers_and_emails_a_fresh_one(web: Web):
    pid = active(web, symptoms=("night_cramps",))
    url, _form = prefs(web, pid)
    assert 'value="night_cramps" checked' in web.client.get(url).text
    web.clock.advance(days=31)  # DRIP_PREFERENCES_LINK_MAX_AGE, default 30 days
    old = web.client.get(url)
    assert old.status_code == 200 and "This link is old" in old.text
    assert "night_cramps" not in old.text and "Pat" not in old.text
    assert "/u/" in old.text  # unsubscribing still works from here
    # any change through the old link is refused, without showing anything
    form = web.form(url)
    before = len(web.sink.received)
    stop = web.client.post(url, data={**form, "action": "stop"})
    assert "This link is old" in stop.text and web.subscriber("pat@example.org").status == "active"
    assert len(web.sink.received) == before
    asked = web.client.post(url, data={**form, "action": "fresh"})
    assert asked.status_code == 200 and "Check your inbox" in asked.text
    fresh = web.sink.received[-1]
    assert fresh.recipient == "pat@example.org" and "List-Unsubscribe" not in fresh.data.decode()
    found = re.search(r"https://clinic\.test(/p/[A-Za-z0-9_.\-]+)", body_text(fresh))
    assert found and found.group(1) != url
    assert 'value="night_cramps" checked' in web.client.get(found.group(1)).text


def test_links_made_before_links_carried_a_time_count_as_old(web: Web):
    pid = active(web)
    legacy = URLSafeSerializer(web.project.env["DRIP_SECRET_KEY"], salt=PREFERENCES).dumps(pid)
    page = web.client.get(f"/p/{legacy}")
    assert page.status_code == 200 and "This link is old" in page.text


def test_the_preferences_link_age_is_configurable():
    assert WebOptions.from_env({"DRIP_PREFERENCES_LINK_MAX_AGE": "7d"}).preferences_max_age == (
        timedelta(days=7)
    )
    with pytest.raises(OptionsError, match="DRIP_PREFERENCES_LINK_MAX_AGE"):
        WebOptions.from_env({"DRIP_PREFERENCES_LINK_MAX_AGE": "soon"})
