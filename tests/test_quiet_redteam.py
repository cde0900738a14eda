"""Red-team of cron's idle verdict (drip/quiet.py, drip/next_work.py): states a
clinic reaches in ordinary use where the verdict was never written (every cron run
paid the full path), or where the quiet line differed from a full run's."""

from __future__ import annotations

from datetime import datetime, timedelta

from conftest import summary
from newsletter_helpers import add, add_newsletter, newsletter_rows, no_series
from test_cron_path import probe
from test_quiet import IDLE_LINE, full_send, iso

NEWS_AT = datetime.fromisoformat("2026-06-02T15:00:00Z")  # 10:00 in Chicago, a Tuesday


def quiet_taken(project, moment: datetime) -> tuple[dict, str]:
    result, output = probe(project, "send", "--now", iso(moment))
    assert result["code"] == 0, output
    return result, output


def test_a_deferred_newsletter_copy_of_someone_who_left_does_not_void_every_verdict(project, sink):
    """A copy deferred by a busy mailbox, then its patient unsubscribes: the sender
    never retries it (nor does it ever change the row), so nothing is due because
    of it. It must not keep next_work at "now" forever."""
    no_series(project)
    add_newsletter(project, send_at="2026-06-02 10:00")
    add(project, "stays@example.org")
    add(project, "busy@example.org")
    sink.handler.by_recipient["busy@example.org"] = "tempfail"
    first = project.run("send", "--now", iso(NEWS_AT))
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout)["deferred"] == 1
    assert newsletter_rows(project) == {"stays@example.org": "sent", "busy@example.org": "deferred"}
    left = project.cli("subscribers", "unsubscribe", "busy@example.org", "--now", iso(NEWS_AT))
    assert left.exit_code == 0, left.output
    later = NEWS_AT + timedelta(minutes=30)  # past the copy's retry time
    assert full_send(project, later) == [IDLE_LINE]
    assert (project.root / "drip.db-quiet").exists(), "no verdict: every cron run in full"
    result, output = quiet_taken(project, later + timedelta(minutes=5))
    assert result["loaded"] == [], output
    assert IDLE_LINE in output
    assert len(sink.received) == 1
