"""The bulk pipeline: many connections, the relay's rate, unsubscribes that land
mid-run, progress on a terminal, and the pure pieces (reply table, pacing)."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import timedelta
from email.header import decode_header, make_header

import pytest
from conftest import summary
from hypothesis import given
from hypothesis import strategies as st
from newsletter_helpers import add_newsletter
from scripted_smtp import ScriptedSMTP
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from test_concurrency import NOW, START, seed

from drip import db, enrollment, subscribers
from drip.bounces import REF
from drip.config import load_config
from drip.message import build_message, new_ref
from drip.models import Delivery, Enrollment, Subscriber
from drip.pacing import Pacer
from drip.replies import Refusal, Stage, Verdict, classify, names_the_mailbox
from drip.sender import BIG_RUN, Sender
from drip.tokens import Tokens
from drip.transport import Rate, SMTPSettings, SMTPTransport

# -- the reply table, without a server ---------------------------------------------


@pytest.mark.parametrize(
    "stage,code,text,verdict",
    [
        (Stage.END_OF_DATA, 250, "2.0.0 OK", Verdict.SENT),
        (Stage.MAIL, 421, "4.3.2 shutting down", Verdict.DEFERRED),
        (Stage.RCPT, 450, "4.2.1 busy", Verdict.DEFERRED),
        (Stage.END_OF_DATA, 452, "4.3.1 full", Verdict.DEFERRED),
        (Stage.RCPT, 550, "5.1.1 <a@b.c> no such user", Verdict.BOUNCED),
        (Stage.RCPT, 550, "5.2.1 mailbox disabled", Verdict.BOUNCED),
        (Stage.RCPT, 550, "User unknown in local recipient table", Verdict.BOUNCED),
        (Stage.RCPT, 550, "5.7.1 Relaying denied", Verdict.REFUSED),
        (Stage.RCPT, 550, "Relaying denied", Verdict.REFUSED),
        (Stage.RCPT, 552, "5.2.2 mailbox full", Verdict.REFUSED),
        (Stage.MAIL, 550, "5.1.8 bad sender domain", Verdict.REFUSED),  # not the patient's
        (Stage.END_OF_DATA, 550, "5.1.1 user unknown", Verdict.REFUSED),
        (Stage.DATA, 554, "no valid recipients", Verdict.REFUSED),
    ],
)
def test_reply_table(stage, code, text, verdict):
    assert classify(stage, code, text) is verdict


def test_refusals_quoting_different_addresses_are_the_same_refusal():
    one = Refusal.of("RCPT TO", 550, "Relaying denied for <a@x.org>")
    two = Refusal.of("RCPT TO", 550, "Relaying denied for <b@y.org>")
    assert one == two
    assert one != Refusal.of("RCPT TO", 550, "5.7.1 Blocked")
    assert not names_the_mailbox("5.7.1 user unknown")  # the enhanced code wins


# -- pacing ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(
    per_second=st.floats(min_value=0.01, max_value=500),
    steps=st.lists(st.floats(min_value=0, max_value=3), min_size=1, max_size=200),
)
def test_pacer_never_exceeds_the_rate(per_second, steps):
    clock = FakeClock()
    pacer = Pacer(per_second, clock)
    granted = 0
    for step in steps:
        clock.now += step
        granted += pacer.take(1000)
        # over any run: at most the starting token plus what the elapsed time earned
        assert granted <= 1 + clock.now * per_second + 1e-6
    assert pacer.wait() >= 0


def test_pacer_waits_the_right_time():
    clock = FakeClock()
    pacer = Pacer(2.0, clock)  # 2 per second
    assert pacer.take(5) == 1
    assert pacer.take(1) == 0
    assert pacer.wait() == pytest.approx(0.5)
    clock.now += 0.5
    assert pacer.take(5) == 1


@pytest.mark.parametrize(
    "text,expected",
    [("10/s", Rate(10, 1)), ("600/m", Rate(600, 60)), ("5000/h", Rate(5000, 3600))],
)
def test_rates(text, expected):
    assert Rate.parse(text) == expected
    assert SMTPSettings.from_url(f"smtp://relay.example?rate={text}").rate == expected


@pytest.mark.parametrize(
    "query",
    ["rate=10", "rate=0/s", "rate=ten/s", "connections=0", "connections=65", "conections=4"],
)
def test_bad_pipeline_settings_are_clear(query):
    with pytest.raises(ValueError):
        SMTPSettings.from_url(f"smtp://relay.example?{query}")


def test_the_password_is_not_in_the_settings_repr():
    settings = SMTPSettings.from_url("smtp://user:hunter2secret@relay.example")
    assert "hunter2secret" not in repr(settings)


# -- headers ---------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=300).filter(lambda t: "\r" not in t and "\n" not in t))
def test_encoded_words_stay_within_rfc_2047_and_round_trip(subject):
    data = build_message(
        from_address="Clínica Piernas Sanas Ñandú Ünïcödé <care@clinic.example>",
        to="pat@example.org",
        subject=subject,
        text="x",
        html="<p>x</p>",
        date=__import__("datetime").datetime(2026, 6, 1, tzinfo=__import__("datetime").UTC),
        message_id="<a@clinic.example>",
    )
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    for word in re.findall(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=", head):
        assert len(word) <= 75, word
    for line in head.split("\r\n"):
        assert len(line) <= 998
    unfolded = re.sub(r"\r\n[ \t]", " ", head)
    (raw,) = re.findall(r"^Subject: (.*)$", unfolded, re.M)
    decoded = str(make_header(decode_header(raw)))
    assert " ".join(decoded.split()) == " ".join(subject.split())


# -- delivery refs ---------------------------------------------------------------------


def test_refs_are_unguessable_and_made_in_time_order():
    """What a bounce is matched by (32 hex digits, 80 random bits), made so that a
    run's refs sort in the order they were made: new rows of the unique index on
    refs then go to its right edge, not to a random page each."""
    refs: list[str] = []
    for _ in range(3):
        refs += [new_ref() for _ in range(300)]
        time.sleep(0.002)  # the next millisecond
    assert all(re.fullmatch(REF, ref) for ref in refs)
    assert len({ref[12:] for ref in refs}) == len(refs)  # the random part alone differs
    made = [ref[:12] for ref in refs]
    assert made == sorted(made) and len(set(made)) >= 3
    assert abs(int(made[-1], 16) / 1000 - time.time()) < 60  # the millisecond, since 1970


def test_a_run_stores_the_refs_it_sent_by_in_the_order_it_claimed_them(project, sink):
    seed(project, 120)  # a big run: built and sent by the sending child
    assert summary(project.run("send", "--now", NOW).stdout)["sent"] == 120
    engine = db.make_engine(project.database_url)
    with Session(engine) as session:
        rows = session.execute(select(Delivery.ref, Delivery.message_id).order_by(Delivery.id))
        refs = {ref: message_id for ref, message_id in rows}
    engine.dispose()
    assert len(refs) == 120
    assert list(refs) == sorted(refs, key=lambda ref: ref[:12])  # claimed in time order
    for ref, message_id in refs.items():
        assert re.fullmatch(REF, ref) and message_id.startswith(f"<{ref}@")
    assert {m.message["Message-ID"].strip("<>").split("@")[0] for m in sink.received} == set(refs)


# -- real processes --------------------------------------------------------------------


def test_an_unsubscribe_during_a_run_stops_that_patients_email(project):
    relay = ScriptedSMTP({"end": "sleep:0.05 250 OK"}).start()  # a relay with latency
    try:
        addresses = seed(project, 60)
        project.env["DRIP_SMTP_URL"] = relay.url + "&connections=2"
        proc = project.popen("send", "--now", NOW)
        deadline = time.monotonic() + 60
        while not relay.received and time.monotonic() < deadline:
            time.sleep(0.01)
        leaving = addresses[-20:]  # the web's unsubscribe, committed mid-run
        engine = db.make_engine(project.database_url)
        with Session(engine) as session:
            session.execute(
                update(Subscriber)
                .where(Subscriber.email.in_(leaving))
                .values(status="unsubscribed")
            )
            session.commit()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        got = {m.recipient for m in relay.received}
        assert not got & set(leaving), "mailed after unsubscribing"
        assert got == set(addresses[:40])
        assert summary(out)["sent"] == 40
    finally:
        relay.stop()


def test_many_connections_with_overlapping_cron_runs(project, sink):
    addresses = seed(project, 150)
    sink.handler.delay = 0.01
    project.env["DRIP_SMTP_URL"] = sink.url + "&connections=8"
    runs = [project.popen("send", "--now", NOW, "--wait", "60") for _ in range(3)]
    outputs = [p.communicate(timeout=180) for p in runs]
    assert all(p.returncode == 0 for p in runs), outputs
    per_recipient = Counter(m.recipient for m in sink.received)
    assert set(per_recipient) == set(addresses)
    assert max(per_recipient.values()) == 1
    assert sum(summary(out)["sent"] for out, _ in outputs) == 150
    assert sink.handler.connections <= 8 * 3


def test_the_relays_rate_is_kept_across_connections(project):
    relay = ScriptedSMTP().start()
    try:
        seed(project, 24)
        project.env["DRIP_SMTP_URL"] = relay.url + "&connections=8&rate=12/s"
        started = time.monotonic()
        result = project.run("send", "--now", NOW)
        elapsed = time.monotonic() - started
        assert summary(result.stdout)["sent"] == 24, result.stderr
        # 24 messages at 12/s: the first goes at once, the last no sooner than 23/12 s later
        assert elapsed >= 23 / 12
    finally:
        relay.stop()


def test_a_progress_bar_on_a_terminal_and_only_the_summary_under_cron(project, sink):
    seed(project, 30)
    # under cron: no terminal, one line
    plain = project.run("send", "--now", NOW, "--dry-run")
    assert plain.stdout.count("\n") == 31 and "ETA" not in plain.stderr
    # on a terminal
    _, text = project.run_on_terminal("send", "--now", NOW, timeout=60)
    assert "30/30 emails" in text and "ETA" in text and "/s" in text
    assert summary(text)["sent"] == 30


def test_every_claim_is_recorded_before_the_run_ends(project, sink):
    seed(project, 50)
    project.env["DRIP_SMTP_URL"] = sink.url + "&connections=4"
    assert summary(project.run("send", "--now", NOW).stdout)["sent"] == 50
    engine = db.make_engine(project.database_url)
    with Session(engine) as session:
        statuses = Counter(session.scalars(select(Delivery.status)))
    assert statuses == {"sent": 50}


def test_a_big_run_builds_in_the_sending_child_and_one_bad_message_fails_alone(project, sink):
    """From BIG_RUN emails, the forked sending child renders; a message it cannot
    build fails alone with its reason, as in a small run (test_faults)."""
    addresses = seed(project, BIG_RUN + 16)
    engine = db.make_engine(project.database_url)
    with engine.begin() as conn:  # e.g. an old row from before validation was strict
        conn.execute(
            update(Subscriber)
            .where(Subscriber.email == addresses[5])
            .values(email="jos\u00e9@exa mple.org")
        )
    project.env["DRIP_SMTP_URL"] = sink.url + "&connections=4"
    result = project.run("send", "--now", NOW)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    counts = summary(result.stdout)
    assert counts["sent"] == BIG_RUN + 15 and counts["failed"] == 1
    assert Counter(m.recipient for m in sink.received) == {
        a: 1 for a in addresses if a != addresses[5]
    }
    with Session(engine) as session:
        (error,) = session.scalars(select(Delivery.error).where(Delivery.status == "failed"))
    assert error.startswith("could not build the email: ")


# -- planning ahead: the next batch is planned while the relay has the last one --------


def _clinic_world(path, config):
    """48 patients with varied symptoms and time zones, some with warning signs, one
    whose address is suppressed: a series whose runs skip, wait and send."""
    engine = db.make_engine(f"sqlite:///{path}")
    db.ensure_schema(engine)
    kinds = [["night_cramps"], ["walking_cramps"], ["heavy_legs", "clot_signs"], ["night_cramps"]]
    zones = ["America/Chicago", "Asia/Tokyo", "Europe/London"]
    with Session(engine, expire_on_commit=False) as session:
        for i in range(48):
            sub = subscribers.create(
                session,
                config,
                email=f"p{i:02d}@example.org",
                symptoms=kinds[i % len(kinds)],
                now=START,
                timezone=zones[i % len(zones)],
                confirmed=True,
            )
            enrollment.sync_subscriber(session, config, sub, START)
        subscribers.suppress(session, "p05@example.org", "complaint", START)
        session.commit()
    return engine


def _state(engine) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """What the runs left, without the random refs: deliveries and enrollments."""
    with Session(engine) as session:
        deliveries = session.execute(
            select(
                Subscriber.email,
                Delivery.campaign_key,
                Delivery.step_key,
                Delivery.status,
                Delivery.error,
                Delivery.sent_at,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .order_by(Subscriber.email, Delivery.campaign_key, Delivery.step_key)
        ).all()
        enrollments = session.execute(
            select(
                Subscriber.email,
                Enrollment.campaign_key,
                Enrollment.state,
                Enrollment.next_step_key,
                Enrollment.next_due_at,
            )
            .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
            .order_by(Subscriber.email, Enrollment.campaign_key)
        ).all()
    return [tuple(row) for row in deliveries], [tuple(row) for row in enrollments]


def test_planning_ahead_in_small_batches_sends_what_one_big_batch_sends(project, sink):
    """A run plans its next batch in small steps while the relay works on the
    claimed messages. Batches of 3 over one connection (the relay has its 4 at once,
    so nearly every batch is planned ahead) must leave exactly what one batch of
    1,000 leaves: the same emails sent, skipped and waiting, the same next steps, a
    --limit cut at the same place, two newsletters and the series kept min_gap
    apart, and every patient's email once."""
    add_newsletter(project)  # Tuesday 10:00, to everyone
    add_newsletter(
        project, key="walkers", audience='{ any = ["walking_cramps"] }', subject="For walkers"
    )
    config = load_config(project.config)
    small = _clinic_world(project.root / "small.db", config)
    big = _clinic_world(project.root / "big.db", config)
    # Monday (welcome, urgent advice; a limit), Monday again (the rest), Tuesday (the
    # newsletters), Wednesday (causes), Thursday (the walking step: skipped for
    # most), next Monday (home relief)
    runs = [(0, 23), (0, None), (1, None), (2, None), (3, None), (7, None)]
    for days, limit in runs:
        now = START + timedelta(days=days)
        for engine, size in ((small, 3), (big, 1000)):
            Sender(
                config,
                engine,
                SMTPTransport.from_url(sink.url + "&connections=1"),
                Tokens("k" * 20),
                clock=lambda now=now: now,
                batch_size=size,
                limit=limit,
            ).run()
        assert _state(small) == _state(big), f"day {days}"
    deliveries, _ = _state(small)
    statuses = Counter(row[3] for row in deliveries)
    assert statuses["sent"] > 100 and statuses["skipped"] > 10, statuses
    news = Counter(row[1] for row in deliveries if row[3] == "sent")
    assert news["newsletter:2026-06-news"] > 20 and news["newsletter:walkers"] > 5, news
    # each patient's email went once, whichever world sent it
    per_message = Counter((m.recipient, m.subject) for m in sink.received)
    assert set(per_message.values()) == {2}, "each email once in each of the two worlds"
    for engine in (small, big):
        engine.dispose()


@pytest.mark.parametrize(("limit", "forks"), [(None, True), (5, False), (BIG_RUN, True)])
def test_a_run_forks_its_sending_child_only_for_what_it_may_send(project, sink, limit, forks):
    """The sending child starts as soon as a run expects a big one (before its first
    batch is planned, as a newsletter page or the due count shows): never when
    --limit keeps the run small, however much is due."""
    from drip.postman import Postman, ProcessPostman

    sender = Sender(
        load_config(project.config),
        db.make_engine(project.database_url),
        SMTPTransport.from_url(sink.url + "&connections=2"),
        Tokens("k" * 20),
        clock=lambda: NOW,
        limit=limit,
        separate_process=True,
    )
    sender._start_postman(10 * BIG_RUN)  # a newsletter's first page of eligible ids
    try:
        assert isinstance(sender.postman, ProcessPostman if forks else Postman)
    finally:
        assert sender.postman is not None
        sender.postman.stop()
