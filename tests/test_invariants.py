"""Property-based tests (hypothesis) of the scheduling guarantees, end to end.

For random campaigns, send windows, time zones, symptom sets, irregular cron
timings and unsubscribe moments, the real send loop runs against the real SMTP
server and a real SQLite file, and these must hold for every example:
never twice, never out of order, never outside the window, never after
unsubscribing, and nothing silently skipped.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailsink import MailSink
from oracle import allowed, first_allowed
from sqlalchemy.orm import Session

from drip import db, enrollment, subscribers
from drip.config import Campaign, Clinic, Config, SendWindow, Step
from drip.models import UNSUBSCRIBED, Subscriber
from drip.rules import Rule
from drip.sender import Sender
from drip.tokens import Tokens
from drip.transport import SMTPTransport

FIXTURE = Path(__file__).parent / "fixtures" / "basic"
SYMPTOMS = {"a": "A", "b": "B", "c": "C"}
ZONES = [
    "America/Chicago",
    "Asia/Tokyo",
    "Europe/London",
    "Pacific/Auckland",
    "UTC",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
]
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # spans the US and EU DST changes


@pytest.fixture(scope="module")
def server():
    sink = MailSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A migrated database file, copied per example (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.ensure_schema(engine)
    engine.dispose()
    return path


rules = st.one_of(
    st.none(),
    st.builds(
        lambda kind, keys: Rule(**{kind: frozenset(keys)}),
        st.sampled_from(["any", "all", "none"]),
        st.sets(st.sampled_from(sorted(SYMPTOMS)), min_size=1, max_size=2),
    ),
)
windows = st.builds(
    lambda start, length, days: SendWindow(start, min(start + length, 24), frozenset(days)),
    st.integers(0, 22),
    st.integers(1, 12),
    st.sets(st.integers(0, 6), min_size=1),
)
steps = st.lists(st.tuples(st.integers(0, 96), rules), min_size=1, max_size=4)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    step_specs=steps,
    window=windows,
    zone=st.sampled_from(ZONES),
    symptoms=st.sets(st.sampled_from(sorted(SYMPTOMS))),
    run_gaps=st.lists(st.integers(1, 40), min_size=3, max_size=30),
    unsubscribe_after=st.one_of(st.none(), st.integers(0, 25)),
)
def test_scheduling_invariants(
    server, migrated, tmp_path, step_specs, window, zone, symptoms, run_gaps, unsubscribe_after
):
    server.handler.received.clear()
    campaign = Campaign(
        key="c",
        name="C",
        audience=Rule(),
        steps=tuple(
            Step(
                key=f"s{i}",
                subject=f"Step {i}",
                preheader="",
                template="welcome",
                delay=timedelta(hours=hours),
                when=when,
            )
            for i, (hours, when) in enumerate(step_specs)
        ),
    )
    config = Config(
        path=FIXTURE / "campaigns.toml",
        clinic=Clinic(
            name="T",
            postal_address="1 Test Street",
            from_address="t@clinic.test",
            reply_to="t@clinic.test",
            base_url="https://clinic.test",
            timezone="UTC",
            send_window=window,
            min_gap=timedelta(hours=6),
        ),
        symptoms=SYMPTOMS,
        red_flags={},
        campaigns=(campaign,),
    )
    folder = tmp_path / f"ex{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    shutil.copy(migrated, folder / "drip.db")
    engine = db.make_engine(f"sqlite:///{folder / 'drip.db'}")
    with Session(engine, expire_on_commit=False) as session:
        sub = subscribers.create(
            session,
            config,
            email="p@example.org",
            symptoms=symptoms,
            now=START,
            timezone=zone,
            confirmed=True,
        )
        enrollment.sync_subscriber(session, config, sub, START)
        session.commit()

    # irregular cron runs, then, once every step is due, one run per window
    # opening (a day apart): enough for any series to finish at one email per run
    tz = ZoneInfo(zone)
    times, moment = [], START
    for gap in run_gaps:
        moment += timedelta(hours=gap)
        times.append(moment)
    catch_up = max(moment, START + sum((timedelta(hours=h) for h, _ in step_specs), timedelta()))
    for _ in range(len(step_specs) + 1):
        catch_up = first_allowed(catch_up + timedelta(days=1), window, tz)
        times.append(catch_up)
    unsubscribed_at = (
        times[unsubscribe_after]
        if unsubscribe_after is not None and unsubscribe_after < len(run_gaps)
        else None
    )

    for now in times:
        if unsubscribed_at is not None and now >= unsubscribed_at:
            with Session(engine) as session:
                sub = session.get(Subscriber, 1)
                if sub.status != UNSUBSCRIBED:
                    sub.status = UNSUBSCRIBED
                    enrollment.sync_subscriber(session, config, sub, now)
                    session.commit()
        Sender(
            config,
            engine,
            SMTPTransport.from_url(server.url),
            Tokens("k" * 20),
            clock=lambda now=now: now,
        ).run()
    engine.dispose()

    got = []
    for received in server.handler.received:
        msg = message_from_bytes(received.data)
        got.append((int(msg["Subject"].split()[1]), parsedate_to_datetime(msg["Date"])))
    numbers = [n for n, _ in got]
    assert len(numbers) == len(set(numbers)), "a step was sent twice"
    assert numbers == sorted(numbers), "steps out of order"
    for n, sent in got:
        # checked against tests/oracle.py, not the scheduler's own in_window/next_allowed
        assert allowed(sent, window, tz), f"step {n} sent outside the window at {sent}"
        if unsubscribed_at is not None:
            assert sent < unsubscribed_at, "sent after unsubscribing"
        due = START + sum((timedelta(hours=h) for h, _ in step_specs[: n + 1]), timedelta())
        assert sent >= first_allowed(due, window, tz), f"step {n} sent before it was due"
    # catching up never bunches: adjacent steps keep min(min_gap, delay) apart
    sent_at = dict(got)
    for n in sent_at:
        if n - 1 in sent_at:
            gap = min(timedelta(hours=6), timedelta(hours=step_specs[n][0]))
            assert sent_at[n] - sent_at[n - 1] >= gap, f"step {n} bunched after {n - 1}"
    wanted = [i for i, (_, when) in enumerate(step_specs) if when is None or when.matches(symptoms)]
    if unsubscribed_at is None:
        assert numbers == wanted, "a matching step was never sent"
