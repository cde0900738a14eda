"""Newsletters end to end: real SMTP sink, real SQLite file, the real `drip` command.

The fixture clinic is in Chicago (UTC-5 in June) with a Mon-Fri 09:00-19:00 window
and min_gap 12h. Subscribers are added on Monday 2026-06-01 at 12:00Z (07:00 in
Chicago, before the window opens, so the series' welcome has not gone yet).
"""

from __future__ import annotations

import email.policy
from email import message_from_bytes

from conftest import summary
from deliver_helpers import refs, sample, write_mbox
from newsletter_helpers import add, add_newsletter, newsletter_rows, no_series, recipients
from sqlalchemy import select
from sqlalchemy.orm import Session

from drip import claims, newsletters
from drip.config import load_config
from drip.db import make_engine
from drip.models import Delivery, Subscriber
from drip.subscribers import address_hash
from drip.web import flows

KEY = "2026-06-news"
TUE_10_CHICAGO = "2026-06-02T15:00:00Z"
SUBJECT = "News from the clinic"


def send(project, now: str) -> dict[str, int]:
    result = project.cli("send", "--now", now)
    assert result.exit_code == 0, result.output
    return summary(result.output)


def session(project) -> Session:
    return Session(make_engine(project.database_url), expire_on_commit=False)


def subscriber(s: Session, address: str) -> Subscriber:
    found = s.scalar(select(Subscriber).where(Subscriber.email == address))
    assert found is not None
    return found


# -- who gets it ---------------------------------------------------------------------


def test_goes_once_to_each_active_subscriber_with_the_pipelines_headers(project, sink):
    add_newsletter(project)
    add(project, "ann@example.org", "night_cramps", "--name", "Ann")
    add(project, "bob@example.org", "heavy_legs")
    send(project, TUE_10_CHICAGO)
    assert recipients(sink) == {"ann@example.org": 1, "bob@example.org": 1}
    assert newsletter_rows(project) == {"ann@example.org": "sent", "bob@example.org": "sent"}
    # later runs find nothing more to send
    send(project, "2026-06-03T15:00:00Z")
    send(project, "2026-06-10T15:00:00Z")
    assert recipients(sink) == {"ann@example.org": 1, "bob@example.org": 1}

    (msg,) = [m for m in sink.handler.to("bob@example.org") if m.subject == SUBJECT]
    parsed = message_from_bytes(msg.data, policy=email.policy.default)
    assert parsed["List-Unsubscribe"].startswith("<https://clinic.test/u/")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    ref = parsed["X-Drip-Ref"]
    assert ref in parsed["Message-ID"] and ref in refs(project, "bob@example.org")
    text, _html = parsed.iter_parts()
    assert "Put your feet up" in text.get_content()  # rendered for bob's symptoms
    (ann,) = [m for m in sink.handler.to("ann@example.org") if m.subject == SUBJECT]
    ann_text = message_from_bytes(ann.data, policy=email.policy.default).get_body(("plain",))
    assert "Hello Ann," in ann_text.get_content()
    assert "Put your feet up" not in ann_text.get_content()
    with session(project) as s:
        row = s.scalar(select(Delivery).where(Delivery.ref == ref))
        assert row is not None and (row.campaign_key, row.step_key) == ("newsletter:" + KEY, KEY)


def test_audience_rules_any_all_none(project, sink):
    add_newsletter(project, "any-news", audience='{ any = ["heavy_legs", "walking_cramps"] }')
    add_newsletter(
        project,
        "all-news",
        send_at="2026-06-03 10:00",
        audience='{ all = ["night_cramps", "heavy_legs"] }',
        subject="More news",
    )
    add_newsletter(
        project,
        "none-news",
        send_at="2026-06-04 10:00",
        audience='{ none = ["heavy_legs"] }',
        subject="Even more news",
    )
    add(project, "night@example.org", "night_cramps")
    add(project, "heavy@example.org", "heavy_legs")
    add(project, "both@example.org", "night_cramps,heavy_legs")
    add(project, "walk@example.org", "walking_cramps")
    for day in ("02", "03", "04"):
        send(project, f"2026-06-{day}T15:00:00Z")
    assert set(newsletter_rows(project, "any-news")) == {
        "heavy@example.org",
        "both@example.org",
        "walk@example.org",
    }
    assert set(newsletter_rows(project, "all-news")) == {"both@example.org"}
    assert set(newsletter_rows(project, "none-news")) == {"night@example.org", "walk@example.org"}
    assert set(recipients(sink, "More news")) == {"both@example.org"}


def test_every_excluded_status_gets_nothing(project, sink, tmp_path):
    add_newsletter(project)
    add(project, "active@example.org")
    result = project.cli(
        "subscribers", "add", "pending@example.org", "--symptoms", "night_cramps",
        "--now", "2026-06-01T12:00:00Z",
    )  # fmt: skip
    assert result.exit_code == 0
    for name in ("unsub", "bounced", "complained", "paused", "suppressed", "optout"):
        add(project, f"{name}@example.org")
    # bounced and complained the real way: a refusal at RCPT, an ARF report
    sink.handler.by_recipient["bounced@example.org"] = "reject"
    send(project, "2026-06-01T15:00:00Z")  # the series' welcome
    complaint = sample("arf_complaint.eml", refs(project, "complained@example.org")[0])
    result = project.cli("bounces", "process", str(write_mbox(tmp_path / "fbl", [complaint])))
    assert result.exit_code == 0, result.output
    config = load_config(project.config)
    now = make_now("2026-06-01T16:00:00Z")
    with session(project) as s:
        flows.unsubscribe(s, config, subscriber(s, "unsub@example.org").public_id, now, "page")
        flows.pause(s, config, subscriber(s, "paused@example.org"), 4, now)
        assert newsletters.set_opt_out(s, subscriber(s, "optout@example.org"), True, now)
        s.commit()
    assert project.cli("suppress", "add", "suppressed@example.org").exit_code == 0
    with session(project) as s:
        statuses = {sub.email: sub.status for sub in s.scalars(select(Subscriber))}
    assert statuses["bounced@example.org"] == "bounced"
    assert statuses["complained@example.org"] == "complained"

    sink.handler.received.clear()
    send(project, "2026-06-03T15:00:00Z")
    assert recipients(sink) == {"active@example.org": 1}
    # the suppressed address (still "active") is recorded as skipped, never sent
    assert newsletter_rows(project) == {
        "active@example.org": "sent",
        "suppressed@example.org": "skipped",
    }
    listed = project.cli("newsletter", "list", "--now", "2026-06-03T15:00:00Z").output
    assert f"{KEY:24} sent" in listed


def make_now(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_claim_itself_refuses_an_opted_out_patient_and_a_cancelled_newsletter(project):
    """Planning and claiming are apart in time: the claim checks again, in SQL."""
    add_newsletter(project)
    add(project, "a@example.org")
    add(project, "b@example.org")
    now = make_now(TUE_10_CHICAGO)
    with session(project) as s:
        a, b = subscriber(s, "a@example.org"), subscriber(s, "b@example.org")

        def claim(sub: Subscriber, ref: str) -> set[str]:
            row = claims.Claim(
                sub.id, "newsletter:" + KEY, KEY, ref, address_hash(sub.email), False, True
            )
            return claims.claim(s, [row], "run1", now)

        newsletters.set_opt_out(s, a, True, now)
        s.flush()
        assert claim(a, "a" * 32) == set()
        assert claim(b, "b" * 32) == {"b" * 32}  # no enrollment needed for a newsletter
        s.rollback()
        newsletters.cancel(s, KEY, now)
        s.flush()
        assert claim(b, "c" * 32) == set()


# -- when ----------------------------------------------------------------------------


def test_local_time_in_each_subscribers_zone(project, sink):
    no_series(project)
    add_newsletter(project)  # 2026-06-02 10:00 local
    add(project, "tokyo@example.org", "night_cramps", "--timezone", "Asia/Tokyo")  # UTC+9
    add(project, "london@example.org", "night_cramps", "--timezone", "Europe/London")  # UTC+1
    add(project, "chicago@example.org")  # UTC-5
    got = []
    for now, expected in [
        ("2026-06-02T00:59:00Z", set()),
        ("2026-06-02T01:00:00Z", {"tokyo@example.org"}),
        ("2026-06-02T08:59:00Z", {"tokyo@example.org"}),
        ("2026-06-02T09:00:00Z", {"tokyo@example.org", "london@example.org"}),
        ("2026-06-02T14:59:00Z", {"tokyo@example.org", "london@example.org"}),
        (TUE_10_CHICAGO, {"tokyo@example.org", "london@example.org", "chicago@example.org"}),
    ]:
        send(project, now)
        got = recipients(sink)
        assert set(got) == expected, now
    assert max(got.values()) == 1


def test_moved_into_the_send_window_and_not_after_it_closes(project, sink):
    # Saturday 10:00: the fixture window is Mon-Fri 09-19, so Monday 09:00 local
    add_newsletter(project, send_at="2026-06-06 10:00")
    add(project)
    send(project, "2026-06-06T15:00:00Z")  # Saturday 10:00 Chicago
    send(project, "2026-06-08T13:59:00Z")  # Monday 08:59
    assert recipients(sink) == {}
    send(project, "2026-06-08T14:00:00Z")  # Monday 09:00
    assert recipients(sink) == {"pat@example.org": 1}


def test_a_run_after_the_window_closed_waits_for_the_next_opening(project, sink):
    add_newsletter(project, send_at="2026-06-02 18:30")
    add(project)
    send(project, "2026-06-03T01:00:00Z")  # Tuesday 20:00 Chicago: closed
    assert recipients(sink) == {}
    send(project, "2026-06-03T14:00:00Z")  # Wednesday 09:00
    assert recipients(sink) == {"pat@example.org": 1}


def test_someone_who_confirms_after_send_at_does_not_get_it(project, sink):
    add_newsletter(project)  # Tuesday 10:00 Chicago = 15:00Z
    for address, confirmed in [
        ("early@example.org", "2026-06-02T14:59:00Z"),
        ("late@example.org", "2026-06-02T15:01:00Z"),
    ]:
        result = project.cli(
            "subscribers", "add", address, "--symptoms", "night_cramps", "--confirmed",
            "--now", confirmed,
        )  # fmt: skip
        assert result.exit_code == 0
    send(project, "2026-06-02T16:00:00Z")
    send(project, "2026-06-09T16:00:00Z")
    assert recipients(sink) == {"early@example.org": 1}


def test_a_draft_is_never_sent_but_can_be_previewed(project, sink):
    add_newsletter(project, send_at=None)
    add(project)
    send(project, TUE_10_CHICAGO)
    send(project, "2027-01-05T15:00:00Z")
    assert recipients(sink) == {} and newsletter_rows(project) == {}
    listed = project.cli("newsletter", "list").output
    assert f"{KEY:24} draft" in listed
    shown = project.cli("newsletter", "preview", KEY, "--format", "text")
    assert shown.exit_code == 0 and shown.output.startswith(f"Subject: {SUBJECT}\n")


# -- min_gap -------------------------------------------------------------------------


def test_a_series_step_falling_with_a_newsletter_waits_min_gap(project, sink):
    add_newsletter(project, send_at="2026-06-01 10:00")  # Monday, like the welcome
    add(project)
    run = send(project, "2026-06-01T15:00:00Z")
    assert run["sent"] == 1
    assert [m.subject for m in sink.received] == [SUBJECT]  # the newsletter; the welcome waits
    send(project, "2026-06-02T02:59:00Z")  # 11:59 after: still inside min_gap (and closed)
    send(project, "2026-06-02T14:00:00Z")  # Tuesday 09:00 Chicago: gap passed, window open
    subjects = [m.subject for m in sink.received]
    assert subjects == [SUBJECT, "Welcome, here is what to expect"]
    times = [message_from_bytes(m.data)["Date"] for m in sink.received]
    assert times[0] != times[1]


def test_a_newsletter_waits_for_min_gap_after_a_series_email(project, sink):
    add(project)
    send(project, "2026-06-02T14:00:00Z")  # Tuesday 09:00 Chicago: the welcome
    add_newsletter(project)  # Tuesday 10:00 Chicago, only an hour later
    send(project, TUE_10_CHICAGO)
    assert recipients(sink) == {}
    send(project, "2026-06-03T02:00:00Z")  # 12h later, but 21:00 Chicago: window closed
    assert recipients(sink) == {}
    send(project, "2026-06-03T14:00:00Z")  # Wednesday 09:00
    assert recipients(sink) == {"pat@example.org": 1}


def test_urgent_email_is_never_held_back_by_a_newsletter(project, sink):
    add_newsletter(project, send_at="2026-06-01 10:00")
    add(project)
    send(project, "2026-06-01T15:00:00Z")
    assert recipients(sink) == {"pat@example.org": 1}
    # a warning sign ticked ten minutes later: the urgent email goes at once
    with session(project) as s:
        config = load_config(project.config)
        sub = subscriber(s, "pat@example.org")
        flows.update_topics(
            s, config, sub, {"night_cramps", "clot_signs"}, sub.timezone, make_now(
                "2026-06-01T15:10:00Z")
        )  # fmt: skip
        s.commit()
    send(project, "2026-06-01T15:10:00Z")
    assert "Please read this today" in [m.subject for m in sink.received]


# -- cancel, removal -----------------------------------------------------------------


def test_cancel_stops_every_copy_not_yet_sent(project, sink):
    add_newsletter(project)
    add(project, "tokyo@example.org", "night_cramps", "--timezone", "Asia/Tokyo")
    add(project, "chicago@example.org")
    add(project, "busy@example.org")
    sink.handler.by_recipient["busy@example.org"] = "tempfail"
    send(project, "2026-06-02T01:00:00Z")  # Tokyo's 10:00: Tokyo gets it
    send(project, TUE_10_CHICAGO)  # Chicago's: one sent, one deferred (451)
    assert newsletter_rows(project)["busy@example.org"] == "deferred"
    result = project.cli("newsletter", "cancel", KEY, "--now", "2026-06-02T15:01:00Z")
    assert result.exit_code == 0 and "cancelled 2026-06-news" in result.output
    assert "2 already sent" in result.output
    del sink.handler.by_recipient["busy@example.org"]
    add(project, "late@example.org", "night_cramps", "--timezone", "Pacific/Honolulu")
    send(project, "2026-06-02T21:00:00Z")  # the retry time and Honolulu's 10:00
    assert recipients(sink) == {"tokyo@example.org": 1, "chicago@example.org": 1}
    assert newsletter_rows(project)["busy@example.org"] == "skipped"
    assert "late@example.org" not in newsletter_rows(project)
    listed = project.cli("newsletter", "list").output
    assert f"{KEY:24} cancelled" in listed
    again = project.cli("newsletter", "cancel", KEY)
    assert "already cancelled" in again.output
    unknown = project.cli("newsletter", "cancel", "nope")
    assert unknown.exit_code == 1 and "no newsletter 'nope'; known: 2026-06-news" in unknown.output


def test_removing_the_newsletter_from_the_file_stops_it(project, sink):
    before = project.config.read_text()
    add_newsletter(project)
    add(project, "tokyo@example.org", "night_cramps", "--timezone", "Asia/Tokyo")
    add(project, "busy@example.org", "night_cramps", "--timezone", "Asia/Tokyo")
    sink.handler.by_recipient["busy@example.org"] = "tempfail"
    add(project, "chicago@example.org")
    send(project, "2026-06-02T01:00:00Z")
    project.config.write_text(before)  # the marketer deletes the [[newsletter]]
    del sink.handler.by_recipient["busy@example.org"]
    send(project, "2026-06-02T03:00:00Z")  # busy's retry would be due
    send(project, TUE_10_CHICAGO)
    assert recipients(sink) == {"tokyo@example.org": 1}
    assert newsletter_rows(project) == {"tokyo@example.org": "sent", "busy@example.org": "skipped"}


# -- commands ------------------------------------------------------------------------


def test_test_sends_one_real_email_and_records_nothing(project, sink):
    add_newsletter(project)
    add(project)
    result = project.cli(
        "newsletter", "test", KEY, "--to", "Marketer@Example.ORG", "--symptoms", "heavy_legs"
    )
    assert result.exit_code == 0, result.output
    (msg,) = sink.received
    assert msg.recipient == "marketer@example.org"
    assert msg.subject == f"[TEST] {SUBJECT}"
    assert msg.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    body = message_from_bytes(msg.data, policy=email.policy.default).get_body(("plain",))
    assert "Put your feet up" in body.get_content()
    with session(project) as s:
        assert list(s.scalars(select(Delivery))) == []
    assert "newsletter" not in project.cli("stats").output
    # and the real send still goes to everyone
    send(project, TUE_10_CHICAGO)
    assert recipients(sink) == {"pat@example.org": 1}
    bad = project.cli("newsletter", "test", KEY, "--to", "not-an-address")
    assert bad.exit_code == 1 and "Traceback" not in bad.output


def test_preview_eml_is_the_message_drip_send_builds(project, sink):
    add_newsletter(project)
    add(project)
    eml = project.cli("newsletter", "preview", KEY, "--format", "eml").output
    send(project, TUE_10_CHICAGO)
    (sent,) = [m for m in sink.received if m.subject == SUBJECT]
    preview = message_from_bytes(eml.encode(), policy=email.policy.default)
    real = message_from_bytes(sent.data, policy=email.policy.default)
    assert sorted(preview.keys()) == sorted(real.keys())
    for name in ("From", "Reply-To", "Subject", "List-Unsubscribe-Post", "MIME-Version"):
        assert preview[name] == real[name]
    strip = str.maketrans("", "", "0123456789")
    ptext, rtext = (m.get_body(preferencelist=("plain",)).get_content() for m in (preview, real))
    # the same words; only the link tokens differ (another patient)
    assert [w for w in ptext.split() if "/" not in w] == [w for w in rtext.split() if "/" not in w]
    assert ptext.translate(strip).count("https://") == rtext.translate(strip).count("https://")


def test_list_shows_state_audience_sent_and_remaining(project, sink):
    add_newsletter(project, audience='{ any = ["heavy_legs"] }')
    add(project, "heavy1@example.org", "heavy_legs")
    add(project, "heavy2@example.org", "heavy_legs", "--timezone", "Asia/Tokyo")
    add(project, "night@example.org", "night_cramps")
    listed = project.cli("newsletter", "list", "--now", "2026-06-01T16:00:00Z").output
    assert f"{KEY:24} {'scheduled':10} {2:>8} {0:>6} {2:>9}" in listed
    send(project, "2026-06-02T01:00:00Z")  # Tokyo
    listed = project.cli("newsletter", "list", "--now", "2026-06-02T01:00:00Z").output
    assert f"{KEY:24} {'sending':10} {2:>8} {1:>6} {1:>9}" in listed
    send(project, TUE_10_CHICAGO)
    listed = project.cli("newsletter", "list", "--now", TUE_10_CHICAGO).output
    assert f"{KEY:24} {'sent':10} {2:>8} {2:>6} {0:>9}" in listed
    stats = project.cli("stats", "--json").output
    assert f'"newsletter:{KEY}/{KEY}"' in stats


def test_dry_run_lists_the_newsletter_and_records_nothing(project, sink):
    add_newsletter(project)
    add(project)
    result = project.cli("send", "--now", TUE_10_CHICAGO, "--dry-run")
    assert f"pat@example.org  newsletter:{KEY}/{KEY}" in result.output
    assert sink.received == [] and newsletter_rows(project) == {}


# -- campaigns.toml ------------------------------------------------------------------


def test_bad_newsletter_entries_are_reported_with_file_and_line(project):
    add_newsletter(project, key="leg-health", send_at="next tuesday")
    text = project.config.read_text().replace('template = "news"', 'template = "nwes"', 1)
    text = text.replace("[[newsletter]]", '[[newsletter]]\naudiense = { any = ["x"] }')
    project.config.write_text(text)
    out = project.cli("check").output
    assert "'leg-health' is already a campaign's key" in out
    assert "newsletter[0].send_at: must be a local time like" in out
    assert "newsletter[0].audiense: unknown field 'audiense'; did you mean 'audience'?" in out
    assert "no template nwes.mjml" in out and "did you mean 'news'?" in out
    assert "Traceback" not in out and "campaigns.toml:" in out


def test_check_puts_newsletters_through_the_quality_gates(project):
    add_newsletter(project, subject="Tips for your legs")
    result = project.cli("check")
    assert result.exit_code == 1
    assert "'Tips for your legs' names a condition (legs)" in result.output
    assert KEY in result.output  # the problem names the newsletter


# -- the shipped example -------------------------------------------------------------


def test_the_example_newsletter_gives_the_travel_advice_plainly(shipped):
    shown = shipped.cli("newsletter", "preview", "2026-12-travel", "--format", "text")
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert text.startswith("Subject: Travel season: a few easy tips ")
    for advice in (
        "walk up and down the aisle",  # move often
        "stop every hour or two",  # on a drive
        "Lift your toes",  # calf exercises in the seat
        "Drink water",
        "loose, comfy clothes",
        "Only wear them if a doctor or nurse has said they are right for you",  # stockings
        "painful, swollen, warm, red or darker, get medical care the same day",  # clot signs
        "call 911 right away",  # and the lungs
        "up to a few weeks after it",
    ):
        assert advice in text, advice
    assert "Put your feet up" not in text and "rest your legs on pillows" not in text
    swollen = shipped.cli(
        "newsletter", "preview", "2026-12-travel", "--format", "text", "--symptoms", "swelling"
    )
    assert "rest your legs on pillows" in swollen.output
    listed = shipped.cli("newsletter", "list", "--now", "2026-11-01T12:00:00Z").output
    assert "2026-12-travel           scheduled" in listed
