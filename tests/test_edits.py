"""Editing a running campaign: a step's identity is its key (rules in README)."""

from __future__ import annotations

from conftest import summary
from sqlalchemy import select
from sqlalchemy.orm import Session

from drip.db import make_engine
from drip.models import Delivery

MON = "2026-06-01T15:00:00Z"


def start(project):
    result = project.cli(
        "subscribers",
        "add",
        "pat@example.org",
        "--symptoms",
        "walking_cramps",
        "--confirmed",
        "--now",
        MON,
    )
    assert result.exit_code == 0, result.output
    assert summary(project.cli("send", "--now", MON).output)["sent"] == 1  # welcome


def rows(project) -> dict[str, tuple[str, str | None]]:
    with Session(make_engine(project.database_url)) as s:
        return {d.step_key: (d.status, d.error) for d in s.scalars(select(Delivery))}


NEW_STEP = """
  [[campaign.step]]
  key = "{key}"
  subject = "A new note"
  preheader = "Something new"
  template = "welcome"
  delay = "{delay}"
"""


def test_a_step_inserted_behind_the_subscriber_is_skipped_for_them(project, sink):
    start(project)
    project.cli("send", "--now", "2026-06-03T15:00:00Z")  # causes (day 2)
    # insert "intro" between welcome and causes: both already behind this patient
    project.edit_config(
        '  [[campaign.step]]\n  key = "causes"',
        NEW_STEP.format(key="intro", delay="0d") + '\n  [[campaign.step]]\n  key = "causes"',
    )
    project.cli("send", "--now", "2026-06-04T15:00:00Z")
    found = rows(project)
    assert found["intro"] == ("skipped", "step added before this subscriber's position")
    assert "A new note" not in [m.subject for m in sink.received]


def test_a_step_added_after_the_subscriber_is_sent(project, sink):
    start(project)
    for day in range(2, 12):
        project.cli("send", "--now", f"2026-06-{day:02d}T15:00:00Z")
    assert len(sink.received) == 4  # the whole series, finished
    project.config.write_text(
        project.config.read_text().replace(
            '[[campaign]]\nkey = "urgent-care"',
            NEW_STEP.format(key="follow-up", delay="1d") + '\n[[campaign]]\nkey = "urgent-care"',
        )
    )
    result = project.cli("send", "--now", "2026-06-15T15:00:00Z")
    assert summary(result.output)["sent"] == 1, result.output
    assert sink.received[-1].subject == "A new note"


def test_a_removed_step_is_never_sent(project, sink):
    start(project)
    text = project.config.read_text()
    begin = text.index('  [[campaign.step]]\n  key = "causes"')
    end = text.index('  [[campaign.step]]\n  key = "walking"')
    project.config.write_text(text[:begin] + text[end:])
    for day in range(2, 12):
        project.cli("send", "--now", f"2026-06-{day:02d}T15:00:00Z")
    subjects = [m.subject for m in sink.received]
    assert "Why muscles tighten at night" not in subjects
    assert subjects == [
        "Welcome, here is what to expect",
        "A note about walking",
        "Simple things to try at home",
    ]


def test_a_changed_delay_applies_to_steps_not_yet_sent(project, sink):
    start(project)
    # causes was due on day 2; make it day 5 (a Saturday: the window moves it to Monday)
    project.edit_config('delay = "2d"', 'delay = "5d"')
    assert summary(project.cli("send", "--now", "2026-06-04T15:00:00Z").output)["sent"] == 0
    assert summary(project.cli("send", "--now", "2026-06-06T15:00:00Z").output)["sent"] == 0
    assert summary(project.cli("send", "--now", "2026-06-08T15:00:00Z").output)["sent"] == 1
    assert sink.received[-1].subject == "Why muscles tighten at night"


def test_new_campaign_enrolls_existing_subscribers(project, sink):
    start(project)
    project.config.write_text(
        project.config.read_text()
        + """
[[campaign]]
key = "newsletter"
name = "Clinic news"

  [[campaign.step]]
  key = "spring"
  subject = "News from the clinic"
  preheader = "What is new"
  template = "welcome"
  delay = "0d"
"""
    )
    result = project.cli("send", "--now", "2026-06-02T15:00:00Z")
    assert "News from the clinic" in [m.subject for m in sink.received], result.output
