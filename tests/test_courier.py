"""The big run's sending child (drip/courier.py) gives every SMTP outcome the same
meaning as the threaded transport (transport.SMTPConnection), row by row of the
README's table, against a real scripted server on 127.0.0.1.

Each row sends two messages over one connection, the first scripted to meet the
fault and the second plain, once through SMTPConnection and once through the
courier: the outcomes, what the server received and how many sessions it saw must
be the same."""

from __future__ import annotations

import time

import pytest
from mailsink import MailSink
from scripted_smtp import ScriptedSMTP
from test_faults import TEMPORARY

from drip.message import Envelope
from drip.postman import ProcessPostman
from drip.transport import DeliveryError, PermanentFailure, SMTPConnection, SMTPSettings

PAT = Envelope("care@clinic.test", "pat@example.org", b"Subject: one\r\n\r\nfirst\r\n")
KEPT = Envelope("care@clinic.test", "kept@example.org", b"Subject: two\r\n\r\n.second\r\n")
JOSE = Envelope("care@clinic.test", "jos\u00e9@example.org", b"Subject: three\r\n\r\nthird\r\n")


def threaded(server: ScriptedSMTP, envelopes: list[Envelope]) -> list[BaseException | None]:
    connection = SMTPConnection(SMTPSettings.from_url(server.url))
    found: list[BaseException | None] = []
    for envelope in envelopes:
        try:
            connection.send(envelope)
        except DeliveryError as exc:
            found.append(exc)
        else:
            found.append(None)
    connection.close()
    return found


def same(envelope: Envelope) -> Envelope:
    return envelope  # what the courier "builds": the envelope it was handed


def courier(server: ScriptedSMTP, envelopes: list[Envelope]) -> list[BaseException | None]:
    found = carry(SMTPSettings.from_url(server.url + "&connections=1"), envelopes)
    return [found.get(i, AssertionError("no outcome")) for i in range(len(envelopes))]


def meaning(error: BaseException | None) -> tuple[object, ...]:
    """What the run does with an outcome: its kind, code, bounce and refusal, and the
    text when it quotes the server (a lost line's text names the exception)."""
    if error is None:
        return ("sent",)
    quoted = "refused" in str(error) or "SMTPUTF8" in str(error)
    kind = (type(error).__name__, getattr(error, "code", None), str(error) if quoted else "")
    if isinstance(error, PermanentFailure):
        return (*kind, error.bounce, error.refusal)
    return kind


def both(script: dict[str, str] | None = None, **options: object):
    """Run the same envelopes and script both ways, each against a server of its own."""

    def run(script_for: dict[str, dict[str, str]], envelopes: list[Envelope]):
        seen = []
        for way in (threaded, courier):
            server = ScriptedSMTP(**options).start()  # type: ignore[arg-type]
            server.script.update(script or {})
            server.script_for.update(script_for)
            try:
                outcomes = way(server, envelopes)
            finally:
                server.stop()
            got = sorted((g.recipient, g.data) for g in server.received)
            seen.append(([meaning(o) for o in outcomes], got, server.connections))
        return seen

    return run


ROWS = [
    *TEMPORARY,
    ("rcpt", "550 5.1.1 No such user"),
    ("rcpt", "550 User unknown"),
    ("rcpt", "550 Relaying denied"),
    ("mail", "553 5.7.1 Sender not allowed"),
    ("data", "554 5.7.1 Rejected by policy"),
    ("end", "554 5.7.1 Message refused as spam"),
    ("mail", "hangup"),  # before MAIL is answered: one more try, on a fresh session
    ("data", "hangup"),
    ("end", "hangup"),  # after the whole message: in doubt
    ("end", "sleep:3 250 OK"),  # past the 2 s timeout, after the content: in doubt
]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
@pytest.mark.parametrize("stage,answer", ROWS)
def test_every_row_means_the_same_as_in_the_threaded_transport(stage, answer, pipelining):
    threads, loop = both(pipelining=pipelining)({"pat@example.org": {stage: answer}}, [PAT, KEPT])
    assert loop == threads
    outcomes, received, _ = loop
    assert outcomes[1] == ("sent",)  # the next message goes on
    assert (KEPT.recipient, KEPT.data) in received


def test_silence_before_mail_is_answered_is_retried_once_then_deferred():
    threads, loop = both({"mail": "sleep:3 250 OK"})({}, [PAT])
    assert loop == threads
    assert loop[0] == [("TemporaryFailure", None, "")]


@pytest.mark.parametrize("stage", ["mail", "rcpt"])
def test_a_server_that_takes_data_after_a_refusal_stays_in_step(stage):
    """RFC 2920 says DATA fails when MAIL or every RCPT did; a server that answers 354
    anyway gets an empty message ending at once, and the session goes on."""
    script = {"mail": "451 4.3.0 Try later"} if stage == "mail" else {}
    threads, loop = both(script, strict=False)(
        {"pat@example.org": {"rcpt": "451 4.3.0 Try later"}}, [PAT, KEPT]
    )
    assert loop == threads
    assert loop[2] == 1  # one session all along
    assert loop[0][0][0] == "TemporaryFailure"


@pytest.mark.parametrize("smtputf8", [True, False])
def test_an_address_that_is_not_plain_ascii(smtputf8):
    threads, loop = both(smtputf8=smtputf8)({}, [JOSE, KEPT])
    assert loop == threads
    if smtputf8:
        assert loop[0][0] == ("sent",)
    else:
        assert "needs SMTPUTF8" in str(loop[0][0])


def test_many_messages_over_many_connections_each_once(sink):
    """Forty messages over eight connections: each once, none lost."""
    envelopes = [
        Envelope("care@clinic.test", f"p{i}@example.org", f"Subject: {i}\r\n\r\n{i}\r\n".encode())
        for i in range(40)
    ]
    found = carry(SMTPSettings.from_url(sink.url + "&connections=8"), envelopes)
    assert found == {i: None for i in range(40)}
    assert sorted(m.recipient for m in sink.received) == sorted(e.recipient for e in envelopes)


def carry(settings: SMTPSettings, envelopes: list[Envelope]) -> dict[int, BaseException | None]:
    postman: ProcessPostman[int] = ProcessPostman(settings, settings.connections, same)
    found: dict[int, BaseException | None] = {}
    try:
        postman.prepare([(str(i), i, e) for i, e in enumerate(envelopes)])
        postman.release([str(i) for i in range(len(envelopes))])
        deadline = time.monotonic() + 30
        while len(found) < len(envelopes) and time.monotonic() < deadline:
            for outcome in postman.outcomes(1.0):
                found[outcome.item] = outcome.error
    finally:
        postman.stop()
    return found


def big(i: int) -> Envelope:
    """A message of ~300 KB: the socket takes it in many partial writes."""
    body = "".join(f"line {n} of message {i}\r\n" for n in range(12_000))
    return Envelope("care@clinic.test", f"p{i}@example.org", f"Subject: {i}\r\n\r\n{body}".encode())


@pytest.mark.parametrize("scheme", ["starttls", "smtps"])
def test_over_tls_big_messages_arrive_whole(scheme, tls_context):
    """Non-blocking TLS: partial writes and reads that want more, both ways."""
    if scheme == "smtps":
        server = MailSink(ssl_context=tls_context).start()
        url = f"smtps://127.0.0.1:{server.port}?verify=no&connections=3"
    else:
        server = MailSink(tls_context=tls_context, require_starttls=True).start()
        url = f"smtp://127.0.0.1:{server.port}?starttls=required&verify=no&connections=3"
    envelopes = [big(i) for i in range(6)]
    try:
        found = carry(SMTPSettings.from_url(url), envelopes)
        assert found == {i: None for i in range(6)}
        got = {m.recipient: m for m in server.received}
        for envelope in envelopes:
            assert got[envelope.recipient].data.replace(b"\r\n", b"\n").rstrip(
                b"\n"
            ) == envelope.data.replace(b"\r\n", b"\n").rstrip(b"\n")
        assert server.handler.tls_sessions == 6
    finally:
        server.stop()


def test_an_unreachable_relay_gives_every_message_back_unsent():
    from mailsink import free_port

    settings = SMTPSettings.from_url(f"smtp://127.0.0.1:{free_port()}?starttls=off&timeout=2")
    found = carry(settings, [PAT, KEPT])
    assert {type(error).__name__ for error in found.values()} == {"TransportUnavailable"}
