"""Edges of the send loop through the real `drip` commands, a real SMTP server and a
real SQLite file: an in-doubt delivery settled either way, retries running out,
a suppressed address whose subscriber is still active, a deferred step whose rule
stopped matching, and a campaign removed from campaigns.toml."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from conftest import summary
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from drip.db import make_engine
from drip.models import Delivery, Subscriber, Symptom
from drip.sender import MAX_ATTEMPTS, retry_delay

MON = "2026-06-01T15:00:00Z"  # Monday 10:00 in Chicago, inside the send window
PAT = "pat@example.org"


def add(project, symptoms: str = "night_cramps", address: str = PAT) -> None:
    result = project.cli(
        "subscribers", "add", address, "--symptoms", symptoms, "--confirmed", "--now", MON
    )
    assert result.exit_code == 0, result.output


def send(project, now: str | datetime) -> dict[str, int]:
    text = now if isinstance(now, str) else now.isoformat()
    result = project.cli("send", "--now", text)
    assert result.exit_code in (0, 3), result.output
    return summary(result.output)


def rows(project) -> dict[str, Delivery]:
    """step key -> the delivery row (one subscriber in these tests)."""
    with Session(make_engine(project.database_url), expire_on_commit=False) as s:
        return {d.step_key: d for d in s.scalars(select(Delivery))}


def subjects(sink) -> list[str]:
    return [m.subject for m in sink.received]


# -- in doubt ------------------------------------------------------------------------


def leave_in_doubt(project) -> str:
    """What a run killed between the relay's 250 and its commit leaves: a claimed
    row, which the next run's sweep marks in doubt. Returns its ref."""
    add(project)
    engine = make_engine(project.database_url)
    ref = "feedc0de" * 4
    now = datetime.fromisoformat(MON)
    with Session(engine) as session:
        sub = session.scalar(select(Subscriber))
        assert sub is not None
        session.add(
            Delivery(
                subscriber_id=sub.id,
                campaign_key="leg-health",
                step_key="welcome",
                status="claimed",
                ref=ref,
                attempts=1,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    assert send(project, MON) == {"sent": 0, "in_doubt": 1, "in_doubt_new": 1} | {
        k: 0 for k in ("skipped", "deferred", "failed")
    }
    listed = project.cli("deliveries", "--in-doubt").output
    assert re.search(rf"^{ref}\s+in_doubt\s+leg-health/welcome\s+{PAT}", listed, re.M)
    return ref


def test_in_doubt_resolved_as_sent_moves_the_campaign_on(project, sink):
    ref = leave_in_doubt(project)
    assert send(project, "2026-06-03T15:00:00Z")["sent"] == 0  # held: causes waits too
    result = project.cli("deliveries", "--resolve", ref, "--as", "sent")
    assert result.exit_code == 0 and f"resolved {ref} as sent" in result.output
    assert rows(project)["welcome"].status == "sent"
    assert send(project, "2026-06-03T15:00:00Z")["sent"] == 1
    assert subjects(sink) == ["Why muscles tighten at night"]  # the welcome never again
    audit = project.cli("audit").output
    assert re.search(rf"delivery\.resolved\.sent\s+{PAT}\s.*{ref}", audit)


def test_resolving_needs_an_in_doubt_ref_and_an_answer(project, sink):
    ref = leave_in_doubt(project)
    missing = project.cli("deliveries", "--resolve", ref)
    assert missing.exit_code == 1 and "--resolve needs --as sent or --as resend" in missing.output
    wrong = project.cli("deliveries", "--resolve", "0" * 32, "--as", "sent")
    assert wrong.exit_code == 1 and f"no in-doubt delivery with ref {'0' * 32}" in wrong.output
    bogus = project.cli("deliveries", "--resolve", ref, "--as", "maybe")
    assert bogus.exit_code == 2 and "'sent', 'resend'" in bogus.output
    assert project.cli("deliveries", "--resolve", ref, "--as", "resend").exit_code == 0
    twice = project.cli("deliveries", "--resolve", ref, "--as", "resend")
    assert twice.exit_code == 1 and "no in-doubt delivery" in twice.output
    assert send(project, MON)["sent"] == 1 and subjects(sink) == ["Welcome, here is what to expect"]


# -- retries -------------------------------------------------------------------------


def test_retries_run_out_after_max_attempts_and_the_series_goes_on(project, sink):
    add(project)
    sink.handler.by_recipient[PAT] = "tempfail"
    now = datetime.fromisoformat(MON)
    for attempt in range(1, MAX_ATTEMPTS):
        assert send(project, now)["deferred"] == 1
        row = rows(project)["welcome"]
        assert (row.status, row.attempts) == ("deferred", attempt)
        assert row.next_attempt_at == now + retry_delay(attempt)
        assert send(project, row.next_attempt_at - timedelta(seconds=1))["deferred"] == 0
        now = row.next_attempt_at
    last = send(project, now)
    assert (last["failed"], last["deferred"]) == (1, 0)
    row = rows(project)["welcome"]
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    assert "451" in (row.error or "")
    assert send(project, now + timedelta(hours=3)) == send(project, now + timedelta(hours=4))
    # failed is final: the next step still comes, and the welcome is never tried again
    sink.handler.by_recipient.clear()
    assert send(project, "2026-06-03T15:00:00Z")["sent"] == 1
    assert subjects(sink) == ["Why muscles tighten at night"]


# -- suppressed but active ----------------------------------------------------------


def test_a_suppressed_address_gets_nothing_while_its_subscriber_stays_active(project, sink):
    add(project)
    assert project.cli("suppress", "add", PAT, "--now", MON).exit_code == 0
    assert send(project, MON)["sent"] == 0 and sink.received == []
    shown = project.cli("subscribers", "show", PAT).output
    assert re.search(r"^status\s+active$", shown, re.M)  # suppressed, not unsubscribed
    assert "campaign leg-health: left" in shown
    assert send(project, "2026-06-10T15:00:00Z")["sent"] == 0 and sink.received == []
    # the operator lifts it: the series starts where it would have
    assert project.cli("suppress", "remove", PAT, "--now", MON).exit_code == 0
    assert send(project, "2026-06-10T15:00:00Z")["sent"] == 1
    assert subjects(sink) == ["Welcome, here is what to expect"]


# -- a deferred step whose rule stopped matching ---------------------------------------


def test_a_deferred_step_whose_rule_no_longer_matches_is_skipped_not_sent(project, sink):
    add(project, "night_cramps,walking_cramps")
    assert send(project, MON)["sent"] == 1  # welcome
    assert send(project, "2026-06-03T15:00:00Z")["sent"] == 1  # causes, day 2
    sink.handler.by_recipient[PAT] = "tempfail"
    assert send(project, "2026-06-04T15:00:00Z")["deferred"] == 1  # walking, day 3
    assert rows(project)["walking"].status == "deferred"
    # the patient unticks walking cramps before the retry (the preferences page
    # changes these rows; drip reads them fresh on every run)
    engine = make_engine(project.database_url)
    with Session(engine) as session:
        session.execute(delete(Symptom).where(Symptom.key == "walking_cramps"))
        session.commit()
    sink.handler.by_recipient.clear()
    retry = send(project, "2026-06-04T15:10:00Z")
    assert (retry["sent"], retry["skipped"]) == (0, 1)
    walking = rows(project)["walking"]
    assert walking.status == "skipped" and walking.attempts == 1
    assert "when rule does not match (any of walking_cramps)" in (walking.error or "")
    assert send(project, "2026-06-08T15:00:00Z")["sent"] == 1
    assert subjects(sink) == [
        "Welcome, here is what to expect",
        "Why muscles tighten at night",
        "Simple things to try at home",
    ]


# -- removing a campaign ---------------------------------------------------------------


def test_removing_a_campaign_stops_it_and_putting_it_back_resumes(project, sink):
    add(project)
    assert send(project, MON)["sent"] == 1
    original = project.config.read_text()
    start = original.index('[[campaign]]\nkey = "leg-health"')
    end = original.index('[[campaign]]\nkey = "urgent-care"')
    project.config.write_text(original[:start] + original[end:])
    assert project.cli("check", "-q").exit_code == 0
    assert send(project, "2026-06-03T15:00:00Z")["sent"] == 0
    assert send(project, "2026-06-10T15:00:00Z")["sent"] == 0
    stats = project.cli("stats").output  # history of a removed campaign still counts
    assert re.search(r"^leg-health/welcome\s+1\s", stats, re.M)
    assert "campaign leg-health" in project.cli("subscribers", "show", PAT).output
    project.config.write_text(original)
    assert send(project, "2026-06-10T15:00:00Z")["sent"] == 1
    assert subjects(sink) == ["Welcome, here is what to expect", "Why muscles tighten at night"]
