"""`drip send` end to end: real SMTP server, real SQLite file, simulated clock."""

from __future__ import annotations

import email.policy
import json
from email import message_from_bytes

from conftest import summary
from sqlalchemy import select
from sqlalchemy.orm import Session

from drip.db import make_engine
from drip.models import AuditEntry, Delivery, Subscriber, Suppression

# 2026-06-01 is a Monday; Chicago is UTC-5 in June, so 15:00Z is 10:00 local.
MON_10 = "2026-06-01T15:00:00Z"


def add(project, address="pat@example.org", symptoms="night_cramps", *extra):
    result = project.cli(
        "subscribers",
        "add",
        address,
        "--symptoms",
        symptoms,
        "--confirmed",
        "--now",
        MON_10,
        *extra,
    )
    assert result.exit_code == 0, result.output
    return result


def deliveries(project):
    with Session(make_engine(project.database_url)) as s:
        return {(d.step_key, d.status) for d in s.scalars(select(Delivery))}


def test_first_step_goes_out_with_every_required_header(project, sink):
    add(project, "pat@example.org", "night_cramps", "--name", "Pat")
    result = project.cli("send", "--now", MON_10)
    assert result.exit_code == 0, result.output
    assert "1 sent, 0 skipped, 0 deferred, 0 failed" in result.output
    (msg,) = sink.received
    parsed = message_from_bytes(msg.data, policy=email.policy.default)
    assert msg.recipient == "pat@example.org"
    assert parsed["Subject"] == "Welcome, here is what to expect"
    assert parsed["From"] == "Test Vein Clinic <care@clinic.test>"
    assert parsed["Reply-To"] == "frontdesk@clinic.test"
    assert parsed["Date"] and parsed["Message-ID"].endswith("@clinic.test>")
    unsub = parsed["List-Unsubscribe"]
    assert unsub.startswith("<https://clinic.test/u/") and unsub.endswith(">")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    ref = parsed["X-Drip-Ref"]
    assert ref and ref in parsed["Message-ID"]
    assert "night" not in unsub and "cramp" not in unsub  # no symptoms in URLs
    # multipart/alternative: text first, html second
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.iter_parts()
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert "Hello Pat," in text.get_content() and "Hello Pat," in html.get_content()
    assert "1 Test Street" in text.get_content() and "1 Test Street" in html.get_content()
    assert unsub[1:-1] in html.get_content()  # the visible link is the same one-click URL
    assert ("welcome", "sent") in deliveries(project)
    # the audit row names the email, written as audit.record writes every detail
    with Session(make_engine(project.database_url)) as session:
        sent = select(AuditEntry.detail).where(AuditEntry.action == "email.sent")
        (detail,) = session.scalars(sent)
    expected = {"campaign": "leg-health", "step": "welcome", "ref": ref}
    assert detail == json.dumps(expected, default=str, sort_keys=True)


def test_steps_arrive_in_order_once_each_over_simulated_weeks(project, sink):
    add(project, "walker@example.org", "walking_cramps")
    add(project, "sleeper@example.org", "night_cramps")
    # run every 3 hours for 3 weeks, like a slow cron
    from datetime import datetime, timedelta

    start = datetime.fromisoformat("2026-06-01T15:00:00+00:00")
    for hours in range(0, 21 * 24, 3):
        result = project.cli("send", "--now", (start + timedelta(hours=hours)).isoformat())
        assert result.exit_code == 0, result.output
    walker = [m.subject for m in sink.handler.to("walker@example.org")]
    sleeper = [m.subject for m in sink.handler.to("sleeper@example.org")]
    assert walker == [
        "Welcome, here is what to expect",
        "Why muscles tighten at night",
        "A note about walking",
        "Simple things to try at home",
    ]
    # the `walking` step's when-rule does not match: recorded as skipped, never sent
    assert sleeper == [
        "Welcome, here is what to expect",
        "Why muscles tighten at night",
        "Simple things to try at home",
    ]
    assert ("walking", "skipped") in deliveries(project)


def test_nothing_is_sent_outside_the_window_then_it_goes_when_it_opens(project, sink):
    add(project)
    saturday_noon = "2026-06-06T17:00:00Z"  # weekends are outside the fixture's window
    assert summary(project.cli("send", "--now", saturday_noon).output)["sent"] == 0
    monday_8am = "2026-06-08T13:00:00Z"  # 08:00 in Chicago, window opens at 09:00
    assert summary(project.cli("send", "--now", monday_8am).output)["sent"] == 0
    assert summary(project.cli("send", "--now", "2026-06-08T14:00:00Z").output)["sent"] == 1
    assert len(sink.received) == 1


def test_the_window_is_the_subscribers_own_time_zone(project, sink):
    add(project, "tokyo@example.org", "night_cramps", "--timezone", "Asia/Tokyo")
    add(project, "chicago@example.org", "night_cramps")
    project.cli("send", "--now", MON_10)  # 10:00 Chicago = 00:00 Tuesday in Tokyo
    assert [m.recipient for m in sink.received] == ["chicago@example.org"]
    project.cli("send", "--now", "2026-06-02T00:30:00Z")  # 09:30 in Tokyo
    assert [m.recipient for m in sink.received] == ["chicago@example.org", "tokyo@example.org"]


def test_dry_run_lists_and_records_nothing(project, sink):
    add(project)
    result = project.cli("send", "--now", MON_10, "--dry-run")
    assert result.exit_code == 0
    assert "pat@example.org  leg-health/welcome" in result.output
    assert "1 would send" in result.output
    assert sink.received == [] and deliveries(project) == set()
    assert summary(project.cli("send", "--now", MON_10).output)["sent"] == 1


def test_limit_caps_a_run(project, sink):
    for i in range(5):
        add(project, f"p{i}@example.org")
    result = project.cli("send", "--now", MON_10, "--limit", "2")
    assert summary(result.output)["sent"] == 2 and "--limit 2 reached" in result.output
    assert summary(project.cli("send", "--now", MON_10).output)["sent"] == 3
    assert len(sink.received) == 5


def test_temporary_failure_is_retried_with_backoff(project, sink):
    add(project, "busy@example.org")
    sink.handler.by_recipient["busy@example.org"] = "tempfail"
    assert "1 deferred" in project.cli("send", "--now", MON_10).output
    # backoff: not again after 1 minute
    assert (
        "0 sent, 0 skipped, 0 deferred"
        in project.cli("send", "--now", "2026-06-01T15:01:00Z").output
    )
    sink.handler.by_recipient.clear()
    assert summary(project.cli("send", "--now", "2026-06-01T15:06:00Z").output)["sent"] == 1
    assert len(sink.handler.to("busy@example.org")) == 1
    assert ("welcome", "sent") in deliveries(project)


def test_hang_up_after_the_whole_message_is_in_doubt_never_resent(project, sink):
    # the server read the whole message, then hung up without answering: it may
    # have it, so drip must not send it again by itself
    add(project, "drop@example.org")
    sink.handler.by_recipient["drop@example.org"] = "drop"
    result = project.cli("send", "--now", MON_10)
    assert "1 in doubt (1 new)" in result.output, result.output
    sink.handler.by_recipient.clear()
    again = project.cli("send", "--now", "2026-06-01T15:10:00Z")
    assert summary(again.output)["sent"] == 0 and "1 in doubt (0 new)" in again.output
    assert sink.received == []
    (ref,) = [
        line.split()[0] for line in project.cli("deliveries", "--in-doubt").output.splitlines()
    ]
    assert project.cli("deliveries", "--resolve", ref, "--as", "resend").exit_code == 0
    assert summary(project.cli("send", "--now", "2026-06-01T15:20:00Z").output)["sent"] == 1
    assert len(sink.handler.to("drop@example.org")) == 1


def test_hard_bounce_marks_bounced_and_suppresses(project, sink):
    add(project, "gone@example.org")
    add(project, "fine@example.org")
    sink.handler.by_recipient["gone@example.org"] = "reject"
    result = project.cli("send", "--now", MON_10)
    assert "1 sent, 0 skipped, 0 deferred, 1 failed (1 bounced)" in result.output
    with Session(make_engine(project.database_url)) as s:
        gone = s.scalar(select(Subscriber).where(Subscriber.email == "gone@example.org"))
        assert gone.status == "bounced"
        assert s.scalar(select(Suppression)) is not None
    sink.handler.by_recipient.clear()
    project.cli("send", "--now", "2026-06-10T15:00:00Z")
    assert sink.handler.to("gone@example.org") == []


def test_policy_rejection_fails_the_email_but_keeps_the_patient(project, sink):
    add(project, "pol@example.org")
    sink.handler.by_recipient["pol@example.org"] = "policy"
    assert "1 failed" in project.cli("send", "--now", MON_10).output
    with Session(make_engine(project.database_url)) as s:
        assert s.scalar(select(Subscriber.status)) == "active"


def test_unsubscribed_subscriber_gets_nothing_more(project, sink):
    add(project)
    project.cli("send", "--now", MON_10)
    with Session(make_engine(project.database_url)) as s:
        sub = s.scalar(select(Subscriber))
        sub.status = "unsubscribed"
        s.commit()
    project.cli("send", "--now", "2026-06-20T15:00:00Z")
    assert len(sink.received) == 1


def test_missing_smtp_settings_is_a_clear_error(project):
    del project.env["DRIP_SMTP_URL"]
    add(project)
    result = project.cli("send", "--now", MON_10)
    assert result.exit_code == 1
    assert "set DRIP_SMTP_URL" in result.output


def test_missing_secret_is_a_clear_error(project):
    add(project)
    project.env["DRIP_SECRET_KEY"] = ""
    result = project.cli("send", "--now", MON_10)
    assert result.exit_code == 1 and "DRIP_SECRET_KEY is not set" in result.output


def test_urgent_advice_goes_out_at_night_and_at_weekends(project, sink):
    # Saturday 03:00 in Chicago: outside the fixture's Mon-Fri 09-19 window
    result = project.cli(
        "subscribers",
        "add",
        "flag@example.org",
        "--symptoms",
        "night_cramps,clot_signs",
        "--confirmed",
        "--now",
        "2026-06-06T08:00:00Z",
    )
    assert result.exit_code == 0, result.output
    project.cli("send", "--now", "2026-06-06T08:00:00Z")
    assert [m.subject for m in sink.received] == ["Please read this today"]


def test_the_preflight_check_runs_again_only_after_an_edit(project, sink):
    add(project, "pat@example.org")
    first = project.cli("send", "--now", "2026-06-01T14:00:00Z")  # before the window
    assert first.exit_code == 0, first.output
    # the same files: the check is not repeated (its verdict is remembered)
    from drip.models import Meta
    from drip.preflight import VERDICT_KEY

    with Session(make_engine(project.database_url)) as s:
        remembered = s.get(Meta, VERDICT_KEY).value
    assert project.cli("send", "--now", "2026-06-01T14:01:00Z").exit_code == 0
    # a broken edit to a template is caught before anything is sent
    layout = project.templates / "_layout.mjml"
    layout.write_text(layout.read_text().replace("{{ first_name", "{{ frist_name", 1))
    broken = project.cli("send", "--now", MON_10)
    assert broken.exit_code == 1 and "frist_name" in broken.output
    assert sink.received == []
    with Session(make_engine(project.database_url)) as s:
        assert s.get(Meta, VERDICT_KEY).value == remembered  # a failed check is not remembered
