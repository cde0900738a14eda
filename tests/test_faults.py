"""Every row of the SMTP outcome table (README, "What each SMTP answer means"),
against a real scripted SMTP server on 127.0.0.1, through the real `drip send`."""

from __future__ import annotations

import pytest
from conftest import summary
from scripted_smtp import ScriptedSMTP
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from drip.db import make_engine
from drip.models import Delivery, Subscriber, Suppression
from drip.sender import IN_FLIGHT_PER_CONNECTION, MAX_IDENTICAL_REFUSALS

MON_10 = "2026-06-01T15:00:00Z"  # Monday 10:00 in Chicago
LATER = "2026-06-01T15:30:00Z"


@pytest.fixture(params=[True, False], ids=["pipelined", "one-command-at-a-time"])
def relay(request):
    """Every row twice: MAIL, RCPT and DATA in one write (RFC 2920, what real relays
    offer), and one command per round trip (a server without PIPELINING)."""
    server = ScriptedSMTP(pipelining=request.param).start()
    yield server
    server.stop()


def add(project, *addresses: str) -> None:
    for address in addresses:
        result = project.cli(
            "subscribers", "add", address, "--symptoms", "night_cramps", "--confirmed",
            "--now", MON_10,
        )  # fmt: skip
        assert result.exit_code == 0, result.output


def rows(project) -> dict[str, tuple[str, str | None, int]]:
    """recipient -> (delivery status, error, attempts) of their welcome email."""
    with Session(make_engine(project.database_url)) as s:
        found = s.execute(
            select(Subscriber.email, Delivery.status, Delivery.error, Delivery.attempts).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        )
        return {email: (status, error, attempts) for email, status, error, attempts in found}


def subscriber_status(project, address: str) -> str:
    with Session(make_engine(project.database_url)) as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email == address))


def suppressed(project) -> int:
    with Session(make_engine(project.database_url)) as s:
        return len(s.scalars(select(Suppression)).all())


def send(project, relay, now=MON_10, *extra: str):
    project.env["DRIP_SMTP_URL"] = relay.url + "".join(extra)
    return project.cli("send", "--now", now)


# (stage, answer): each one the email is deferred for, to be tried again
TEMPORARY = [
    ("mail", "421 4.3.2 Service shutting down"),
    ("rcpt", "421 4.3.2 Service shutting down"),
    ("data", "421 4.3.2 Service shutting down"),
    ("end", "421 4.3.2 Service shutting down"),
    ("mail", "451 4.3.0 Local error"),
    ("rcpt", "450 4.2.1 Mailbox busy"),
    ("data", "451 4.3.0 Try again later"),
    ("end", "452 4.3.1 Insufficient storage"),
    ("rcpt", "hangup"),  # the line drops before the message content was sent
]


@pytest.mark.parametrize("stage,answer", TEMPORARY)
def test_temporary_answers_are_deferred_and_retried(project, relay, stage, answer):
    add(project, "pat@example.org")
    relay.script_for["pat@example.org"] = {stage: answer}
    if stage == "mail":
        relay.script[stage] = answer
    result = send(project, relay)
    assert result.exit_code == 0, result.output
    assert summary(result.output)["deferred"] == 1
    status, error, attempts = rows(project)["pat@example.org"]
    assert (status, attempts) == ("deferred", 1) and error
    relay.script_for.clear()
    relay.script.clear()
    assert summary(send(project, relay, "2026-06-01T15:04:00Z").output)["sent"] == 0  # backoff
    assert summary(send(project, relay, "2026-06-01T15:06:00Z").output)["sent"] == 1
    assert rows(project)["pat@example.org"][:1] == ("sent",)
    assert subscriber_status(project, "pat@example.org") == "active"


@pytest.mark.parametrize(
    "answer",
    ["550 5.1.1 <pat@example.org>: No such user", "550 5.2.1 Mailbox disabled",
     "550 No such user here", "553 5.1.3 Bad recipient address syntax"],
)  # fmt: skip
def test_rcpt_refusal_naming_the_mailbox_bounces_and_suppresses(project, relay, answer):
    add(project, "pat@example.org", "kept@example.org")
    relay.script_for["pat@example.org"] = {"rcpt": answer}
    result = send(project, relay)
    assert result.exit_code == 0, result.output
    counts = summary(result.output)
    assert (counts["sent"], counts["failed"], counts["bounced"]) == (1, 1, 1)
    assert rows(project)["pat@example.org"][0] == "failed"
    assert subscriber_status(project, "pat@example.org") == "bounced"
    assert subscriber_status(project, "kept@example.org") == "active"
    assert suppressed(project) == 1


@pytest.mark.parametrize(
    "stage,answer",
    [
        ("rcpt", "550 5.7.1 Relaying denied"),
        ("rcpt", "550 Relaying denied"),  # no enhanced code: still not the patient's fault
        ("rcpt", "554 5.7.1 Client host rejected"),
        ("mail", "553 5.7.1 Sender address rejected"),
        ("data", "554 5.6.0 Transaction failed"),
        ("end", "554 5.7.1 Message rejected as spam"),
        ("end", "550 5.1.1 User unknown"),  # after the content: not a recipient refusal
    ],
)
def test_other_permanent_refusals_fail_the_email_and_keep_the_patient(
    project, relay, stage, answer
):
    add(project, "pat@example.org")
    (relay.script if stage == "mail" else relay.script_for.setdefault("pat@example.org", {}))[
        stage
    ] = answer
    result = send(project, relay)
    assert summary(result.output)["failed"] == 1
    assert summary(result.output).get("bounced", 0) == 0
    status, error, _ = rows(project)["pat@example.org"]
    assert status == "failed" and answer.split()[0] in error
    assert subscriber_status(project, "pat@example.org") == "active"
    assert suppressed(project) == 0


def test_a_relay_refusing_everyone_stops_the_run_and_bounces_nobody(project, relay):
    addresses = [f"p{i:02d}@example.org" for i in range(40)]
    add(project, *addresses)
    relay.script["rcpt"] = "550 Relaying denied for <{}>"
    result = send(project, relay, MON_10, "&connections=1")
    assert result.exit_code == 2, result.output
    assert "refused with the same answer" in result.output
    failed = summary(result.output)["failed"]
    # the messages already handed over when the run decided to stop finish too
    assert MAX_IDENTICAL_REFUSALS <= failed <= MAX_IDENTICAL_REFUSALS + IN_FLIGHT_PER_CONNECTION
    assert summary(result.output).get("bounced", 0) == 0
    assert suppressed(project) == 0
    with Session(make_engine(project.database_url)) as s:
        assert set(s.scalars(select(Subscriber.status))) == {"active"}
    # fixed: the rest go out on the next run
    relay.script.clear()
    again = send(project, relay, LATER)
    assert summary(again.output)["sent"] == 40 - failed


@pytest.mark.parametrize("answer", ["hangup", "sleep:3 250 OK"])  # timeout=2 in relay.url
def test_silence_after_the_whole_message_is_in_doubt_and_never_resent(project, relay, answer):
    add(project, "pat@example.org", "other@example.org")
    relay.script_for["pat@example.org"] = {"end": answer}
    result = send(project, relay)
    assert result.exit_code == 0, result.output
    assert summary(result.output)["sent"] == 1
    assert summary(result.output)["in_doubt_new"] == 1
    assert rows(project)["pat@example.org"][0] == "in_doubt"
    relay.script_for.clear()
    again = send(project, relay, "2026-06-05T15:00:00Z")
    assert summary(again.output)["in_doubt"] == 1
    assert len(relay.to("pat@example.org")) == 1, "sent again without an operator's word"


def test_unreachable_relay_stops_the_run_and_puts_the_claims_back(project):
    from mailsink import free_port

    add(project, "pat@example.org", "two@example.org")
    project.env["DRIP_SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}?starttls=off&timeout=2"
    result = project.cli("send", "--now", MON_10)
    assert result.exit_code == 2 and "cannot reach SMTP server" in result.output
    with Session(make_engine(project.database_url)) as s:
        found = s.execute(select(Delivery.status, Delivery.attempts)).all()
    assert {status for status, _ in found} <= {"deferred"}
    assert all(attempts == 0 for _, attempts in found)  # attempts not counted


def test_an_address_that_cannot_be_encoded_fails_alone_with_its_reason(project, relay):
    add(project, "fine@example.org", "also@example.org")
    engine = make_engine(project.database_url)
    with engine.begin() as conn:  # e.g. an old row from before validation was strict
        conn.execute(
            text("UPDATE subscribers SET email = 'jos\u00e9@exa mple.org' WHERE email = :e"),
            {"e": "also@example.org"},
        )
    result = send(project, relay)
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output
    counts = summary(result.output)
    assert counts["sent"] == 1 and counts["failed"] == 1
    assert "error in drip or a template" in result.output
    status, error, _ = rows(project)["jos\u00e9@exa mple.org"]
    assert status == "failed" and "not a deliverable address" in error


def test_international_domain_goes_out_as_punycode(project, relay):
    add(project, "user@b\u00fccher.example")
    result = send(project, relay)
    assert summary(result.output)["sent"] == 1, result.output
    (got,) = relay.received
    assert got.recipient == "user@xn--bcher-kva.example"
    assert b"To: user@xn--bcher-kva.example\r\n" in got.data


def test_non_ascii_local_part_uses_smtputf8_when_offered(project, relay):
    add(project, "jos\u00e9@example.org")
    result = send(project, relay)
    assert summary(result.output)["sent"] == 1, result.output
    (got,) = relay.received
    assert got.recipient == "jos\u00e9@example.org"
    assert "To: jos\u00e9@example.org\r\n".encode() in got.data


def test_non_ascii_local_part_without_smtputf8_fails_with_the_reason(project):
    relay = ScriptedSMTP(smtputf8=False).start()
    try:
        add(project, "jos\u00e9@example.org", "plain@example.org")
        result = send(project, relay)
        counts = summary(result.output)
        assert counts["sent"] == 1 and counts["failed"] == 1, result.output
        assert relay.to("jos\u00e9@example.org") == []
        status, error, _ = rows(project)["jos\u00e9@example.org"]
        assert status == "failed" and "needs SMTPUTF8" in error
        assert subscriber_status(project, "jos\u00e9@example.org") == "active"
        shown = project.cli("subscribers", "show", "jos\u00e9@example.org").output
        assert "needs SMTPUTF8" in shown
        assert "needs SMTPUTF8" in project.cli("stats").output
    finally:
        relay.stop()


def test_connections_are_opened_once_and_reused(project, relay):
    add(project, *[f"p{i:02d}@example.org" for i in range(30)])
    result = send(project, relay, MON_10, "&connections=3")
    assert summary(result.output)["sent"] == 30
    assert 1 <= relay.connections <= 3


def test_a_421_drops_that_connection_and_the_run_goes_on(project, relay):
    add(project, *[f"p{i:02d}@example.org" for i in range(6)])
    relay.script_for["p02@example.org"] = {"rcpt": "421 4.7.0 Too many errors, closing"}
    result = send(project, relay, MON_10, "&connections=1")
    counts = summary(result.output)
    assert counts["sent"] == 5 and counts["deferred"] == 1, result.output
    assert relay.connections == 2  # a fresh connection after the 421


@pytest.mark.parametrize("pipelining", [True, False])
def test_mail_rcpt_and_data_go_in_one_write_when_the_relay_offers_pipelining(project, pipelining):
    relay = ScriptedSMTP(pipelining=pipelining).start()
    try:
        add(project, *[f"p{i}@example.org" for i in range(5)])
        assert summary(send(project, relay).output)["sent"] == 5
        assert relay.pipelined == (5 if pipelining else 0)
    finally:
        relay.stop()


@pytest.mark.parametrize("stage", ["mail", "rcpt"])
def test_a_server_that_takes_data_after_a_refusal_stays_in_step(project, stage):
    """RFC 2920 says DATA fails when MAIL or every RCPT did; a server that answers 354
    anyway gets an empty message ending at once, and the connection goes on."""
    relay = ScriptedSMTP(strict=False).start()
    try:
        add(project, "pat@example.org", "kept@example.org")
        relay.script_for["pat@example.org"] = {"rcpt": "451 4.3.0 Try later"}
        if stage == "mail":
            relay.script["mail"] = "451 4.3.0 Try later"
        result = send(project, relay, MON_10, "&connections=1")
        counts = summary(result.output)
        if stage == "mail":
            assert counts["deferred"] == 2 and counts["sent"] == 0, result.output
        else:
            assert (counts["deferred"], counts["sent"]) == (1, 1), result.output
            assert len(relay.to("kept@example.org")) == 1
        assert relay.to("pat@example.org") == []
        assert relay.connections == 1
        assert {status for status, _, _ in rows(project).values()} <= {"deferred", "sent"}
    finally:
        relay.stop()


# -- the web pages' mail queue goes through the same table ----------------------------


@pytest.mark.parametrize(
    "script,status,suppressed_after",
    [
        ({"rcpt": "550 5.1.1 No such user"}, "failed", 1),
        ({"rcpt": "550 Relaying denied"}, "failed", 0),
        ({"end": "hangup"}, "in_doubt", 0),
        ({"rcpt": "451 4.3.0 Try later"}, "queued", 0),
    ],
)
def test_queued_web_mail_follows_the_outcome_table(
    project, relay, script, status, suppressed_after
):
    from datetime import UTC, datetime

    from drip import db, mailqueue
    from drip.message import Envelope
    from drip.models import QueuedMail

    now = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
    engine = db.make_engine(project.database_url)
    db.ensure_schema(engine)
    with Session(engine) as session:
        message = b"From: care@clinic.example\r\nTo: pat@example.org\r\nSubject: x\r\n\r\nhello\r\n"
        mailqueue.enqueue(
            session,
            kind="confirm",
            envelope=Envelope("care@clinic.example", "pat@example.org", message),
            now=now,
            subscriber_id=None,
        )
        session.commit()
    relay.script.update(script)
    from drip.transport import SMTPTransport

    with SMTPTransport.from_url(relay.url) as transport:
        counts = mailqueue.deliver_queued(engine, transport, lambda: now)
    assert counts.stopped is None
    with Session(engine) as session:
        (row,) = session.scalars(select(QueuedMail))
        assert row.status == status, row.error
    assert suppressed(project) == suppressed_after
