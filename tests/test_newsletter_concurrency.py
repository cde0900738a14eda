"""A newsletter goes exactly once, proven with real `drip send` processes racing and dying.

Same shape as test_concurrency.py, for the newsletter half of the pipeline: the
subscribers are in no series, so every email in the sink is the newsletter.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime

import pytest
from conftest import kill_mid_send, summary
from newsletter_helpers import add_newsletter, no_series
from sqlalchemy import select
from sqlalchemy.orm import Session

from drip import db, subscribers
from drip.config import load_config
from drip.locking import RangeLocks
from drip.models import Delivery
from drip.sender import IN_FLIGHT_PER_CONNECTION, LEASE_PER_IN_FLIGHT, MIN_LEASE

NOW = "2026-06-02T15:00:00Z"  # Tuesday 10:00 in Chicago: the newsletter's send_at
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.slow


def seed(project, count: int) -> list[str]:
    """`count` confirmed subscribers (in no series) and a newsletter due at NOW."""
    no_series(project)
    add_newsletter(project)
    config = load_config(project.config)
    engine = db.make_engine(project.database_url)
    db.ensure_schema(engine)
    addresses = [f"n{i:04d}@example.org" for i in range(count)]
    with Session(engine) as session:
        for address in addresses:
            subscribers.create(
                session, config, email=address, symptoms=["night_cramps"], now=START, confirmed=True
            )
        session.commit()
    engine.dispose()
    return addresses


def statuses(project) -> Counter[str]:
    engine = db.make_engine(project.database_url)
    with Session(engine) as session:
        found = Counter(
            session.scalars(
                select(Delivery.status).where(Delivery.campaign_key == "newsletter:2026-06-news")
            )
        )
    engine.dispose()
    return found


def test_two_overlapping_sends_deliver_the_newsletter_once_each(any_project, sink):
    addresses = seed(any_project, 200)
    sink.handler.delay = 0.005
    first = any_project.popen("send", "--now", NOW)
    sink.handler.wait_for(1, timeout=60)  # the first run holds the lock and is sending
    second = any_project.popen("send", "--now", NOW, "--wait", "120")
    third = any_project.popen("send", "--now", NOW)  # no --wait: leaves at once
    outputs = [p.communicate(timeout=120)[0] for p in (first, second, third)]
    assert [p.returncode for p in (first, second, third)] == [0, 0, 0], outputs
    per_recipient = Counter(m.recipient for m in sink.received)
    assert set(per_recipient) == set(addresses)
    assert max(per_recipient.values()) == 1
    assert summary(outputs[0])["sent"] == 200 and summary(outputs[1])["sent"] == 0
    # the third found the lock held and left, or came after and found nothing due
    assert "another `drip send`" in outputs[2] or summary(outputs[2])["sent"] == 0
    assert statuses(any_project) == {"sent": 200}


def test_kill_9_mid_newsletter_then_rerun_never_twice(any_project, sink):
    connections = 4
    addresses = seed(any_project, 200)
    assert 30 <= kill_mid_send(any_project, sink, connections, 30, NOW) < 200

    rerun = any_project.run("send", "--now", NOW)
    assert rerun.returncode == 0, rerun.stderr
    per_recipient = Counter(m.recipient for m in sink.received)
    assert max(per_recipient.values()) == 1, "a newsletter was sent twice"
    found = statuses(any_project)
    assert 0 < found["in_doubt"] <= IN_FLIGHT_PER_CONNECTION * connections
    assert found["sent"] + found["in_doubt"] == 200
    assert len(set(addresses) - set(per_recipient)) <= found["in_doubt"]
    assert summary(rerun.stdout)["in_doubt_new"] == found["in_doubt"]
    # later runs never resend an in-doubt copy; the operator decides
    again = any_project.run("send", "--now", "2026-06-03T15:00:00Z")
    assert summary(again.stdout)["sent"] == 0
    assert len(sink.received) == sum(per_recipient.values())


def test_the_progress_bar_counts_the_newsletter_too(project, sink):
    seed(project, 30)
    project.env["DRIP_SMTP_URL"] = sink.url
    _, text = project.run_on_terminal("send", "--now", NOW, timeout=60)
    drawn = re.findall(r"(\d+)/(\d+) emails", text)
    assert drawn and {total for _, total in drawn} == {"30"}, text  # known from the start
    assert summary(text)["sent"] == 30


@pytest.mark.parametrize("any_project", ["postgresql"], indirect=True)  # SQLite: one sender
def test_postgresql_workers_share_a_newsletter_by_ranges_of_subscribers(any_project, sink):
    """Three senders started together split the newsletter: each range of subscriber
    ids is planned, built and claimed by one of them, not raced for by all (which
    kept each email once through the unique key, but built every message three
    times over and sent no faster than one sender)."""
    seed(any_project, 300)
    sink.handler.delay = 0.01
    connections = 2
    any_project.env["DRIP_SMTP_URL"] = sink.url + f"&connections={connections}"
    workers = [any_project.popen("send", "--now", NOW) for _ in range(3)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    sent = [summary(out)["sent"] for out in outputs]
    assert sum(sent) == 300 and sum(1 for n in sent if n) >= 2, sent
    assert max(Counter(m.recipient for m in sink.received).values()) == 1
    width = min(200, max(MIN_LEASE, LEASE_PER_IN_FLIGHT * IN_FLIGHT_PER_CONNECTION * connections))
    engine = db.make_engine(any_project.database_url)
    with Session(engine) as session:
        owners: dict[int, set[str | None]] = {}
        for subscriber_id, run_id in session.execute(
            select(Delivery.subscriber_id, Delivery.run_id).where(
                Delivery.campaign_key == "newsletter:2026-06-news"
            )
        ):
            owners.setdefault(subscriber_id // width, set()).add(run_id)
    engine.dispose()
    shared = {block: runs for block, runs in owners.items() if len(runs) > 1}
    assert not shared, f"ranges of {width} ids claimed by several senders: {shared}"


@pytest.mark.parametrize("any_project", ["postgresql"], indirect=True)
def test_a_range_is_held_by_one_sender_until_given_back_or_its_sender_dies(any_project):
    engine = db.make_engine(any_project.database_url)
    mine, theirs = RangeLocks(engine), RangeLocks(engine)
    assert mine.take("2026-06-news", 3)
    assert not theirs.take("2026-06-news", 3)
    assert theirs.take("2026-06-news", 4) and theirs.take("2026-07-news", 3)
    mine.give_back("2026-06-news", 3)
    assert theirs.take("2026-06-news", 3)
    assert not mine.take("2026-06-news", 3)
    theirs.close()  # as when its process dies: the server frees its locks
    assert mine.take("2026-06-news", 3) and mine.take("2026-06-news", 4)
    mine.close()
    engine.dispose()
