"""The planning reads of a due batch: on SQLite straight on the driver, with a plan
forced onto the batch's own ids; they must give exactly what SQLAlchemy's
statements give (the PostgreSQL path), on a database with every kind of row."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from drip import db, duebatch, enrollment
from drip.models import Delivery, Enrollment, Subscriber, Suppression, Symptom
from drip.states import DeliveryStatus, EnrollmentState, SubscriberStatus
from drip.subscribers import address_hash

NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


def build_world(session: Session, seed: int, people: int = 60) -> None:
    """Subscribers of every status, paused or not, with enrollments of every state,
    due or not, leased or not, delivery rows of every status, symptoms and some
    suppressed addresses."""
    rng = random.Random(seed)

    def moment() -> datetime | None:
        return rng.choice(
            [
                None,
                NOW,
                NOW - timedelta(seconds=1),
                NOW + timedelta(microseconds=1),
                NOW
                + timedelta(
                    minutes=rng.randint(-10000, 10000), microseconds=rng.randint(0, 999999)
                ),
            ]
        )

    for i in range(1, people + 1):
        email = f"p{i}@example.org"
        session.add(
            Subscriber(
                id=i,
                public_id=f"{i:032x}",
                email=email,
                first_name=rng.choice([None, "", "Ana", "José"]),
                timezone=rng.choice(["UTC", "America/New_York", "Asia/Tokyo"]),
                status=rng.choice(list(SubscriberStatus)),
                created_at=NOW - timedelta(days=30),
                paused_until=rng.choice(
                    [None, None, NOW - timedelta(days=1), NOW + timedelta(days=1), NOW]
                ),
            )
        )
        session.flush()  # the rows below refer to it
        for key in rng.sample(
            ["night_cramps", "swelling", "heavy_legs", "red_flag"], rng.randint(0, 3)
        ):
            session.add(Symptom(subscriber_id=i, key=key))
        if rng.random() < 0.2:
            session.add(
                Suppression(address_hash=address_hash(email), reason="test", created_at=NOW)
            )
        for campaign in rng.sample(["leg-health", "veins", "urgent"], rng.randint(0, 3)):
            session.add(
                Enrollment(
                    subscriber_id=i,
                    campaign_key=campaign,
                    started_at=NOW
                    - timedelta(days=rng.randint(0, 40), microseconds=rng.randint(0, 9)),
                    state=rng.choice(list(EnrollmentState)),
                    next_step_key=rng.choice([None, "welcome", "causes"]),
                    next_due_at=moment(),
                    leased_by=rng.choice([None, None, None, "other-run"]),
                )
            )
            for step in rng.sample(["welcome", "causes", "walking"], rng.randint(0, 3)):
                session.add(
                    Delivery(
                        subscriber_id=i,
                        campaign_key=campaign,
                        step_key=step,
                        status=rng.choice(list(DeliveryStatus)),
                        ref=f"{rng.getrandbits(128):032x}",
                        created_at=NOW - timedelta(days=3),
                        updated_at=NOW
                        - timedelta(days=rng.randint(0, 3), microseconds=rng.randint(0, 99)),
                        sent_at=moment(),
                        next_attempt_at=moment(),
                    )
                )
    session.commit()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32), shuffle=st.randoms(use_true_random=False))
def test_sqlite_reads_give_what_sqlalchemy_gives(tmp_path_factory, seed, shuffle):
    path = tmp_path_factory.mktemp("world") / "drip.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.ensure_schema(engine)
    with Session(engine) as session:
        build_world(session, seed)
        ids = list(session.scalars(select(Enrollment.id)))
        ids += [10_000, 10_001]  # gone since the ids were read
        shuffle.shuffle(ids)
        for now in (NOW, NOW - timedelta(days=2), NOW + timedelta(days=9)):
            raw = duebatch.due_batch(session, ids, now)
            split = len(enrollment.ENROLLMENT_ROW)
            core = [
                (enrollment.EnrollmentRow(*row[:split]), duebatch.Recipient(*row[split:]))
                for row in session.connection().execute(
                    duebatch.DUE_BATCH, {"ids": ids, "now": now}
                )
            ]
            assert raw == core and [type(e.state) for e, _ in raw] == [
                type(e.state) for e, _ in core
            ]
            assert [e.started_at.tzinfo for e, _ in raw] == [UTC] * len(raw)
        subs = [*list(session.scalars(select(Subscriber.id))), 99999]
        records = duebatch.records(session, subs)
        assert records == enrollment.records_for(session, subs)
        for steps in records.values():
            for record in steps.values():
                assert type(record.status) is DeliveryStatus and record.at.tzinfo is UTC
        assert duebatch.symptoms(session, subs) == {
            sid: {
                k
                for (k,) in session.execute(select(Symptom.key).where(Symptom.subscriber_id == sid))
            }
            for sid in subs
        }
        hashes = [address_hash(f"p{i}@example.org") for i in range(1, 80)]
        assert duebatch.suppressed(session, hashes) == set(
            session.scalars(select(Suppression.address_hash))
        )
        some = ids[: len(ids) // 2]
        duebatch.lease(session, some, "this-run")
        leased = set(
            session.scalars(select(Enrollment.id).where(Enrollment.leased_by == "this-run"))
        )
        assert leased == {i for i in some if i < 10_000}
        session.rollback()
    engine.dispose()


def test_a_batch_is_read_by_its_own_ids_whatever_is_due(tmp_path):
    """Read through the due index, every batch walked every row still due (the send
    quadratic in the list); by primary key it reads its own rows."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'drip.db'}")
    db.ensure_schema(engine)
    with Session(engine) as session:
        build_world(session, 7, people=30)
        connection = session.connection().connection.driver_connection
        plans = {}
        for name, statement in (
            ("due", duebatch._RAW_DUE_BATCH),
            ("records", duebatch._RAW_RECORDS),
        ):
            rows = connection.execute(
                "EXPLAIN QUERY PLAN " + statement.sql,
                {
                    "ids": "[1, 2]",
                    "now": "2026-06-01 15:00:00.000000",
                    "enrolled": "active",
                    "active": "active",
                },
            ).fetchall()
            plans[name] = "\n".join(row[-1] for row in rows)
        assert "SEARCH e USING INTEGER PRIMARY KEY" in plans["due"], plans
        assert "SEARCH s USING INTEGER PRIMARY KEY" in plans["due"], plans
        assert "ix_enrollments_due" not in plans["due"] and "SCAN e" not in plans["due"], plans
        assert "SCAN d" not in plans["records"], plans
    engine.dispose()
