"""The set-based re-plan (drip/replan.py) gives what the per-subscriber logic gives.

For random campaigns (steps added, removed, reordered, new delays, send windows,
audiences), random time zones and random delivery histories in every status,
the same database is re-planned both ways, on two copies of one SQLite file:
every enrollment must get the same state, next step and due time, and the same
steps must be recorded as skipped.
"""

from __future__ import annotations

import os
import secrets
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from drip import db, enrollment
from drip.config import ALWAYS, Campaign, Clinic, Config, SendWindow, Step
from drip.models import Delivery, Enrollment, Subscriber, Symptom
from drip.replan import openings, replan_all
from drip.rules import Rule
from drip.schedule import next_allowed

FIXTURE = Path(__file__).parent / "fixtures" / "basic"
SYMPTOMS = {"a": "A", "b": "B", "c": "C"}
# DST in both hemispheres, half-hour offsets and shifts, a zone that changes at midnight
ZONES = [
    "UTC",
    "America/Chicago",
    "Europe/London",
    "Pacific/Auckland",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Havana",
    "America/St_Johns",
]
NOW = datetime(2026, 3, 29, 0, 30, 15, 250000, tzinfo=UTC)  # the EU's change night
# weighted towards what most rows hold
STATUSES = ["sent"] * 6 + ["skipped", "failed", "deferred", "deferred", "claimed", "in_doubt"]
STATES = ["active"] * 4 + ["finished", "held", "left", "opted_out"]
KEYS = [f"s{i}" for i in range(6)]

windows = st.builds(
    lambda start, length, days: SendWindow(start, min(start + length, 24), frozenset(days)),
    st.integers(0, 23),
    st.integers(1, 24),
    st.sets(st.integers(0, 6), min_size=1),
)
rules = st.builds(
    lambda kind, keys: Rule(**{kind: frozenset(keys)}) if kind else Rule(),
    st.sampled_from([None, None, None, "any", "all", "none"]),
    st.sets(st.sampled_from(sorted(SYMPTOMS)), min_size=1, max_size=2),
)
moments = st.integers(-90 * 24 * 60, 90 * 24 * 60).map(
    lambda minutes: NOW + timedelta(minutes=minutes, microseconds=minutes * 7919 % 10**6)
)


def test_openings_answer_like_next_allowed():
    """The window table the SQL looks up, against schedule.next_allowed itself."""

    @settings(max_examples=400, deadline=None)
    @given(window=windows, zone=st.sampled_from(ZONES), moment=moments)
    # the clocks skip London's 1:00-2:00 on 29 March 2026: no opening that day
    @example(
        window=SendWindow(1, 2, frozenset(range(7))),
        zone="Europe/London",
        moment=datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
    )
    def check(window, zone, moment):
        tz = ZoneInfo(zone)
        local = moment.astimezone(tz).date()
        found = openings(window, tz, local - timedelta(days=1), local + timedelta(days=9))
        assert found.next_allowed(moment) == next_allowed(moment, window, tz)

    check()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.ensure_schema(engine)
    engine.dispose()
    return path


@st.composite
def campaigns(draw, key: str) -> Campaign:
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=5, unique=True))
    urgent = draw(st.booleans()) and key == "c0"
    steps = tuple(
        Step(
            key=k,
            subject=k,
            preheader="",
            template="welcome",
            delay=timedelta(minutes=draw(st.integers(0, 6 * 24 * 60))),
            send_window=ALWAYS if urgent else draw(st.one_of(st.none(), windows)),
        )
        for k in keys
    )
    kind = "urgent" if urgent else "drip"
    return Campaign(key=key, name=key, audience=draw(rules), steps=steps, kind=kind)


@st.composite
def configs(draw) -> Config:
    count = draw(st.integers(1, 3))
    return Config(
        path=FIXTURE / "campaigns.toml",
        clinic=Clinic(
            name="T",
            postal_address="1 Test Street",
            from_address="t@clinic.test",
            reply_to="t@clinic.test",
            base_url="https://clinic.test",
            timezone="UTC",
            send_window=draw(windows),
            min_gap=timedelta(hours=draw(st.integers(0, 24))),
        ),
        symptoms=SYMPTOMS,
        red_flags={},
        campaigns=tuple(draw(campaigns(f"c{i}")) for i in range(count)),
    )


@st.composite
def histories(draw):
    """Subscribers, enrollments (also in campaigns the file no longer has) and deliveries."""
    people, enrolled, delivered = [], [], []
    for sid in range(1, draw(st.integers(1, 10)) + 1):
        people.append(
            dict(
                id=sid,
                zone=draw(st.sampled_from(ZONES)),
                status=draw(st.sampled_from(["active"] * 6 + ["unsubscribed", "pending"])),
                symptoms=draw(st.sets(st.sampled_from(sorted(SYMPTOMS)))),
            )
        )
        for ckey in draw(st.sets(st.sampled_from(["c0", "c0", "c1", "c1", "c2", "gone"]))):
            enrolled.append(
                dict(
                    subscriber_id=sid,
                    campaign_key=ckey,
                    started_at=draw(moments),
                    state=draw(st.sampled_from(STATES)),
                )
            )
            for skey in draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True)):
                status = draw(st.sampled_from(STATUSES))
                at = draw(moments)
                delivered.append(
                    dict(
                        subscriber_id=sid,
                        campaign_key=ckey,
                        step_key=skey,
                        status=status,
                        ref=f"{sid}-{ckey}-{skey}",
                        attempts=1,
                        created_at=at,
                        updated_at=at,
                        sent_at=at if status == "sent" and draw(st.booleans()) else None,
                        next_attempt_at=draw(st.one_of(st.none(), moments))
                        if status == "deferred"
                        else None,
                    )
                )
    return people, enrolled, delivered


def seed(engine, people, enrolled, delivered) -> None:
    with Session(engine) as session:
        for p in people:
            session.execute(
                insert(Subscriber),
                [
                    dict(
                        id=p["id"],
                        public_id=f"{p['id']:032x}",
                        email=f"p{p['id']}@example.org",
                        timezone=p["zone"],
                        status=p["status"],
                        created_at=NOW,
                        source="test",
                        soft_bounces=0,
                    )
                ],
            )
            for key in p["symptoms"]:
                session.execute(insert(Symptom), [dict(subscriber_id=p["id"], key=key)])
        if enrolled:
            session.execute(insert(Enrollment), enrolled)
        if delivered:
            session.execute(insert(Delivery), delivered)
        session.commit()


def outcome(engine):
    with Session(engine) as session:
        plans = {
            (e.subscriber_id, e.campaign_key): (
                e.state,
                e.next_step_key,
                e.next_due_at,
                e.started_at,
            )
            for e in session.scalars(select(Enrollment))
        }
        rows = {
            (d.subscriber_id, d.campaign_key, d.step_key): (
                d.status,
                d.error,
                d.created_at,
                d.sent_at,
            )
            for d in session.scalars(select(Delivery))
        }
    return plans, rows


def replan_both(each, sql, config, history) -> None:
    """Seed both databases alike, re-plan one per subscriber and one set-based, compare."""
    for engine, replan in ((each, enrollment.replan_each), (sql, replan_all)):
        seed(engine, *history)
        with Session(engine) as session:
            replan(session, config, NOW)
            session.commit()
    plans_each, rows_each = outcome(each)
    plans_sql, rows_sql = outcome(sql)
    assert plans_sql == plans_each
    assert rows_sql == rows_each


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=configs(), history=histories())
def test_set_based_replan_equals_the_per_subscriber_logic(migrated, tmp_path, config, history):
    folder = tmp_path / f"ex{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    engines = []
    for name in ("each.db", "sql.db"):
        shutil.copy(migrated, folder / name)
        engines.append(db.make_engine(f"sqlite:///{folder / name}"))
    try:
        replan_both(*engines, config, history)
    finally:
        for engine in engines:
            engine.dispose()


@pytest.fixture(scope="module")
def postgres_pair():
    """Two fresh PostgreSQL databases (DRIP_TEST_POSTGRES_URL, as .ci/run sets it)."""
    url = os.environ.get("DRIP_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set DRIP_TEST_POSTGRES_URL to run the PostgreSQL variant")
    import psycopg

    names = [f"drip_replan_{secrets.token_hex(5)}" for _ in range(2)]
    engines = []
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    for name in names:
        engine = db.make_engine(url.rsplit("/", 1)[0] + f"/{name}")
        db.ensure_schema(engine)
        engines.append(engine)
    yield engines
    for engine in engines:
        engine.dispose()
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=configs(), history=histories())
def test_set_based_replan_equals_the_per_subscriber_logic_on_postgresql(
    postgres_pair, config, history
):
    for engine in postgres_pair:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "TRUNCATE subscribers, subscriber_symptoms, enrollments, deliveries, meta "
                    "RESTART IDENTITY CASCADE"
                )
            )
    replan_both(*postgres_pair, config, history)
