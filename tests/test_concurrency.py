"""Exactly once, proven with real `drip` processes racing and dying.

These run the real command in separate processes against a real SMTP server and a
real database (SQLite file, and PostgreSQL when DRIP_TEST_POSTGRES_URL is set).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from conftest import kill_mid_send, summary
from sqlalchemy import select
from sqlalchemy.orm import Session

from drip import db, enrollment, subscribers
from drip.config import load_config
from drip.models import Delivery
from drip.sender import IN_FLIGHT_PER_CONNECTION

NOW = "2026-06-01T15:00:00Z"  # Monday 10:00 in Chicago
START = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)

pytestmark = pytest.mark.slow


def seed(project, count: int) -> list[str]:
    """`count` confirmed subscribers, all with their first step due at NOW."""
    config = load_config(project.config)
    engine = db.make_engine(project.database_url)
    db.ensure_schema(engine)
    addresses = [f"p{i:04d}@example.org" for i in range(count)]
    with Session(engine, expire_on_commit=False) as session:
        for address in addresses:
            sub = subscribers.create(
                session, config, email=address, symptoms=["night_cramps"], now=START, confirmed=True
            )
            enrollment.sync_subscriber(session, config, sub, START)
        session.commit()
    engine.dispose()
    return addresses


def statuses(project) -> Counter[str]:
    engine = db.make_engine(project.database_url)
    with Session(engine) as session:
        found = Counter(session.scalars(select(Delivery.status)))
    engine.dispose()
    return found


def test_two_sends_started_together_send_each_email_once(any_project, sink):
    addresses = seed(any_project, 200)
    first = any_project.popen("send", "--now", NOW)
    second = any_project.popen("send", "--now", NOW)
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    per_recipient = Counter(m.recipient for m in sink.received)
    assert set(per_recipient) == set(addresses)
    assert max(per_recipient.values()) == 1
    # whichever started second waited for nothing: it found the lock held and left,
    # or found nothing due; together they sent each email exactly once
    sent = [0 if "another `drip send`" in out else summary(out)["sent"] for out, _ in outputs]
    assert sum(sent) == 200
    assert statuses(any_project) == {"sent": 200}


def test_a_waiting_send_finds_nothing_left_to_send(any_project, sink):
    seed(any_project, 60)
    sink.handler.delay = 0.01
    first = any_project.popen("send", "--now", NOW)
    sink.handler.wait_for(1, timeout=60)  # the first run holds the lock and is sending
    second = any_project.popen("send", "--now", NOW, "--wait", "120")
    out1, _ = first.communicate(timeout=120)
    out2, _ = second.communicate(timeout=120)
    assert summary(out1)["sent"] == 60 and summary(out2)["sent"] == 0
    assert len(sink.received) == 60


def test_kill_9_mid_run_with_8_connections_then_rerun_never_twice(any_project, sink):
    connections = 8
    addresses = seed(any_project, 200)
    after_kill = kill_mid_send(any_project, sink, connections, 40, NOW)
    assert 40 <= after_kill < 200
    time.sleep(1.0)  # the SMTP child process died with its parent: nothing more goes
    assert len(sink.received) == after_kill

    rerun = any_project.run("send", "--now", NOW)
    assert rerun.returncode == 0, rerun.stderr
    per_recipient = Counter(m.recipient for m in sink.received)
    assert max(per_recipient.values()) == 1, "an email was sent twice"
    found = statuses(any_project)
    # the documented bound: at most IN_FLIGHT_PER_CONNECTION x connections claimed and not recorded
    assert found["in_doubt"] <= IN_FLIGHT_PER_CONNECTION * connections
    assert found["sent"] + found["in_doubt"] == 200
    missing = set(addresses) - set(per_recipient)
    assert len(missing) <= found["in_doubt"]  # everyone else was delivered
    assert summary(rerun.stdout)["in_doubt_new"] == found["in_doubt"]
    listed = any_project.run("deliveries", "--in-doubt").stdout.splitlines()
    assert len(listed) == found["in_doubt"]
    # a third run sends nothing and still reports what is in doubt
    again = any_project.run("send", "--now", NOW)
    assert summary(again.stdout)["sent"] == 0
    assert summary(again.stdout)["in_doubt"] == found["in_doubt"]
    assert len(sink.received) == sum(per_recipient.values())


def test_in_doubt_delivery_is_held_and_resolved_by_the_operator(project, sink):
    seed(project, 1)
    engine = db.make_engine(project.database_url)
    # what a run killed between the server's 250 and its commit leaves behind
    with Session(engine) as session:
        session.add(
            Delivery(
                subscriber_id=1,
                campaign_key="leg-health",
                step_key="welcome",
                status="claimed",
                ref="deadbeef" * 4,
                attempts=1,
                created_at=START,
                updated_at=START,
            )
        )
        session.commit()
    result = project.cli("send", "--now", "2026-06-10T15:00:00Z")
    assert summary(result.output)["sent"] == 0 and "1 in doubt (1 new)" in result.output
    assert sink.received == []  # held: not resent, and the next step waits too
    result = project.cli("deliveries", "--resolve", "deadbeef" * 4, "--as", "resend")
    assert result.exit_code == 0, result.output
    result = project.cli("send", "--now", "2026-06-10T15:00:00Z")
    assert summary(result.output)["sent"] == 1
    assert [m.subject for m in sink.received] == ["Welcome, here is what to expect"]


def test_the_unique_key_refuses_a_second_row_for_the_same_step(any_project):
    """The last line of defence under the lock: the database itself."""
    from sqlalchemy.exc import IntegrityError

    seed(any_project, 1)
    engine = db.make_engine(any_project.database_url)
    row = dict(
        subscriber_id=1,
        campaign_key="leg-health",
        step_key="welcome",
        status="claimed",
        attempts=1,
        created_at=START,
        updated_at=START,
    )
    with Session(engine) as session:
        session.add(Delivery(ref="a" * 32, **row))
        session.commit()
        session.add(Delivery(ref="b" * 32, **row))
        with pytest.raises(IntegrityError):
            session.commit()
    engine.dispose()


@pytest.mark.parametrize("any_project", ["postgresql"], indirect=True)  # SQLite: one sender
def test_four_postgresql_workers_share_the_work_and_survive_a_kill(any_project, sink):
    """Several senders on one PostgreSQL database (one machine here, many in use):
    each email once, in order, and a worker killed mid-run costs at most its own
    in-flight bound, in doubt, never a duplicate."""
    addresses = seed(any_project, 300)
    sink.handler.delay = 0.02
    any_project.env["DRIP_SMTP_URL"] = sink.url + "&connections=4"
    workers = [any_project.popen("send", "--now", NOW) for _ in range(4)]
    sink.handler.wait_for(60, timeout=60)
    workers[0].send_signal(signal.SIGKILL)
    outputs = [w.communicate(timeout=120) for w in workers[1:]]
    assert all(w.returncode == 0 for w in workers[1:]), outputs
    assert sum(summary(out)["sent"] for out, _ in outputs) > 0  # the others did send
    sink.handler.delay = 0
    rerun = any_project.run("send", "--now", NOW)
    assert rerun.returncode == 0, rerun.stderr
    per_recipient = Counter(m.recipient for m in sink.received)
    assert max(per_recipient.values()) == 1, "an email was sent twice"
    found = statuses(any_project)
    assert found["in_doubt"] <= IN_FLIGHT_PER_CONNECTION * 4  # the killed worker's bound
    assert found["sent"] + found["in_doubt"] == 300
    assert len(set(addresses) - set(per_recipient)) <= found["in_doubt"]
    # the next step, three days on, again with four workers: each once, after the first
    later = "2026-06-04T15:00:00Z"
    second = [any_project.popen("send", "--now", later) for _ in range(4)]
    assert all(w.wait(timeout=120) == 0 for w in second)
    subjects: dict[str, list[str]] = {}
    for message in sink.received:
        subjects.setdefault(message.recipient, []).append(message.subject)
    for address, got in subjects.items():
        assert len(got) == len(set(got)), f"{address} got an email twice: {got}"
        if len(got) == 2:
            assert got[0].startswith("Welcome"), got  # in order
    assert sum(len(got) == 2 for got in subjects.values()) >= 300 - found["in_doubt"]


def test_two_purges_at_once_delete_and_audit_an_unconfirmed_signup_once(any_project):
    # every `drip send` purges signups never confirmed; on PostgreSQL several run at
    # once, and the second must find the row gone, not delete (and audit) it again
    import threading
    import warnings
    from datetime import timedelta

    from sqlalchemy import func
    from sqlalchemy.exc import SAWarning

    from drip import rights
    from drip.models import AuditEntry, Subscriber

    config = load_config(any_project.config)
    engine = db.make_engine(any_project.database_url)
    db.ensure_schema(engine)
    with Session(engine) as session:
        subscribers.create(
            session, config, email="never@example.org", symptoms=["night_cramps"], now=START
        )
        session.commit()
    later = START + timedelta(days=8)
    found: dict[str, tuple[int, int]] = {}

    def second() -> None:
        with Session(engine) as session:
            found["second"] = rights.purge_pending(session, later)
            session.commit()

    with warnings.catch_warnings():
        warnings.simplefilter("error", SAWarning)  # "expected to delete 1 row; 0 were"
        first = Session(engine)
        found["first"] = rights.purge_pending(first, later)  # holds its locks, uncommitted
        racer = threading.Thread(target=second)
        racer.start()
        time.sleep(0.5)  # the second purge is waiting on the first's lock by now
        first.commit()
        first.close()
        racer.join(30)
    assert found == {"first": (1, 0), "second": (0, 0)}
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
        purged = select(func.count()).where(AuditEntry.action == "subscriber.purged")
        assert session.scalar(purged) == 1
    engine.dispose()
