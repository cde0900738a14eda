"""The forked build and send stages (postman.ProcessPostman) against a real SMTP server:
what is only prepared is never sent, what is released goes out in order, what the
child cannot build comes back as its reason."""

from __future__ import annotations

import time

from scripted_smtp import ScriptedSMTP

from drip.message import BuildFailed, Envelope
from drip.postman import ProcessPostman
from drip.transport import SMTPSettings


def build(work: tuple[str, str]) -> Envelope:
    """What the sending child runs: an Envelope from plain values (raises like a
    template error would for a recipient named 'broken')."""
    recipient, body = work
    if recipient.startswith("broken"):
        raise ValueError("template error on line 3")
    return Envelope("care@clinic.test", recipient, f"Subject: {body}\r\n\r\n{body}\r\n".encode())


def settings(sink) -> SMTPSettings:
    return SMTPSettings.from_url(sink.url + "&connections=2")


def outcomes_of(postman: ProcessPostman[str], count: int) -> dict[str, BaseException | None]:
    found: dict[str, BaseException | None] = {}
    deadline = time.monotonic() + 30
    while len(found) < count and time.monotonic() < deadline:
        for outcome in postman.outcomes(1.0):
            found[outcome.item] = outcome.error
    return found


def test_only_released_messages_are_sent_in_order_and_dropped_ones_never(sink):
    postman: ProcessPostman[str] = ProcessPostman(settings(sink), 1, build)
    try:
        postman.prepare(
            [(f"k{i}", f"item{i}", (f"p{i}@example.org", f"hello {i}")) for i in range(6)]
        )
        postman.release(["k0", "k2", "k1"], dropped=["k3"])  # k3's claim was lost
        found = outcomes_of(postman, 3)
        assert found == {"item0": None, "item2": None, "item1": None}
        postman.release(["k5"], dropped=["k4"])
        assert outcomes_of(postman, 1) == {"item5": None}
    finally:
        postman.stop()  # k4 was dropped; nothing else was only prepared
    got = [m.recipient for m in sink.received]
    assert got == ["p0@example.org", "p2@example.org", "p1@example.org", "p5@example.org"]


def test_stopping_sends_what_was_released_and_nothing_only_prepared(sink):
    postman: ProcessPostman[str] = ProcessPostman(settings(sink), 2, build)
    postman.prepare([(f"k{i}", f"item{i}", (f"p{i}@example.org", "x")) for i in range(20)])
    postman.release([f"k{i}" for i in range(5)])
    postman.stop()  # at once: the five released still go, the other fifteen never
    assert sorted(m.recipient for m in sink.received) == [f"p{i}@example.org" for i in range(5)]


def test_stopping_still_sends_the_released_when_a_line_closes_meanwhile():
    """Stopped while released messages wait and the only line is closed by the
    relay (421): a fresh session carries them, at once."""
    server = ScriptedSMTP().start()
    try:
        server.script_for["p0@example.org"] = {"end": "421 4.7.0 closing after this one"}
        postman: ProcessPostman[str] = ProcessPostman(
            SMTPSettings.from_url(server.url + "&connections=1"), 1, build
        )
        postman.prepare([(f"k{i}", f"item{i}", (f"p{i}@example.org", "x")) for i in range(4)])
        postman.release([f"k{i}" for i in range(4)])
        started = time.monotonic()
        postman.stop()
        assert time.monotonic() - started < 20  # not the 60 s wait for a wedged child
        assert [m.recipient for m in server.received][-3:] == [
            f"p{i}@example.org" for i in (1, 2, 3)
        ]
    finally:
        server.stop()


def test_a_message_the_child_cannot_build_comes_back_with_its_reason(sink):
    postman: ProcessPostman[str] = ProcessPostman(settings(sink), 2, build)
    try:
        postman.prepare(
            [
                ("a", "first", ("a@example.org", "x")),
                ("b", "second", ("broken@example.org", "x")),
                ("c", "third", ("c@example.org", "x")),
            ]
        )
        postman.release(["a", "b", "c"])
        found = outcomes_of(postman, 3)
    finally:
        postman.stop()
    assert found["first"] is None and found["third"] is None
    assert isinstance(found["second"], BuildFailed)
    assert "template error on line 3" in str(found["second"])
    assert sorted(m.recipient for m in sink.received) == ["a@example.org", "c@example.org"]


def test_two_children_share_the_messages_and_each_goes_once(sink):
    postman: ProcessPostman[str] = ProcessPostman(settings(sink), 4, build, children=2)
    try:
        postman.prepare(
            [(f"k{i}", f"item{i}", (f"p{i}@example.org", f"hello {i}")) for i in range(20)]
        )
        postman.release([f"k{i}" for i in range(0, 20, 2)], dropped=["k1", "k3"])
        found = outcomes_of(postman, 10)
        assert found == {f"item{i}": None for i in range(0, 20, 2)}
    finally:
        postman.stop()  # the odd ones were only prepared (or dropped): never sent
    got = sorted(m.recipient for m in sink.received)
    assert got == sorted(f"p{i}@example.org" for i in range(0, 20, 2))
