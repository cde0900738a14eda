"""A big run's sending child: one thread that builds each message and carries it to
the relay over non-blocking connections (postman.ProcessPostman is its parent side).

Why one thread: building is CPU, SMTP is waiting. With a thread per connection,
the connection threads and the builder fought over one interpreter lock; with a
builder process of its own, every message crossed one more process boundary (a
wake-up on a busy two-core machine, and its 15 KB through one more pipe). An event
loop does both in one interpreter: it builds while the relay works, and answers a
connection as soon as it is readable.

Each connection (a `Line`) carries one message at a time, with the same steps and
the same meaning for every reply as transport.SMTPConnection (the table in
replies.py): MAIL, RCPT and DATA in one write when the relay offers PIPELINING
(else one at a time), the content after 354, then the relay's verdict. Sessions are
opened (connect, EHLO, STARTTLS, AUTH) by short-lived threads running the threaded
transport's own code, so a distant relay's handshakes overlap instead of queueing.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import smtplib
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from multiprocessing.connection import Connection
from typing import Any

from .message import BuildFailed, Envelope
from .replies import Stage
from .transport import (
    PIPELINE,
    SharedTLS,
    SMTPSettings,
    TemporaryFailure,
    TransportUnavailable,
    commands,
    dot_stuffed,
    in_doubt,
    lost_before_content,
    open_session,
    refusal_at,
    refused,
    smtp_options,
)

_CHUNK = 256 * 1024  # bytes per socket write
_BLOCKED = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_IN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP

Report = Callable[[str, BaseException | None], None]  # a message's outcome
Again = Callable[[str, Envelope], None]  # send it again, on a fresh session


class Phase(Enum):
    IDLE = "idle"  # ready for a message
    COMMANDS = "commands"  # MAIL, RCPT, DATA sent (or being sent): their replies
    CONTENT = "content"  # the message after 354: its verdict
    EMPTY = "empty"  # the empty message a server took DATA for after a refusal
    RESET = "reset"  # RSET after a refusal, so the session stays in step


class Line:
    """One open SMTP session driven by the courier's loop, one message at a time."""

    def __init__(self, session: smtplib.SMTP, timeout: float, report: Report, again: Again):
        self.session = session
        sock = session.sock
        assert sock is not None  # open_session connected it
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.pipelining = bool(session.has_extn("pipelining"))
        self.smtputf8 = bool(session.has_extn("smtputf8"))
        self.timeout = timeout
        self._report = report  # (key, None or the error): the message's outcome
        self._again = again  # (key, envelope): send it again on a fresh session
        self.phase = Phase.IDLE
        self.dead = False
        self.deadline = float("inf")  # when the server has been silent too long
        self._inbox = bytearray()
        self._reply: list[bytes] = []  # the lines of a multi-line reply so far
        self._out = b""
        self._at = 0  # how much of _out the socket has taken
        self._key: str | None = None
        self._envelope: Envelope | None = None
        self._retried = False
        self._replies: list[tuple[int, bytes]] = []
        self._refused: tuple[Stage, tuple[int, ...], tuple[int, bytes]] | None = None
        self._next: list[bytes] = []  # commands still to send, one per round trip

    @property
    def wants_write(self) -> bool:
        return self._at < len(self._out)

    def start(self, key: str, envelope: Envelope, retried: bool) -> None:
        """Begin a message; raises (the line stays idle) when it cannot go at all."""
        text = commands(envelope, smtp_options(envelope, self.smtputf8))
        self._key, self._envelope, self._retried = key, envelope, retried
        self._replies, self._refused = [], None
        self.phase = Phase.COMMANDS
        if self.pipelining:  # RFC 2920: one write, three replies
            self._send(text)
        else:
            first, *self._next = [part + b"\r\n" for part in text.split(b"\r\n")[:3]]
            self._send(first)

    # -- events from the loop ----------------------------------------------------------

    def readable(self) -> None:
        try:
            chunk = self.sock.recv(65536)
            while chunk and isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                chunk += self.sock.recv(self.sock.pending())
        except _BLOCKED:
            return
        except OSError as exc:
            self.lost(exc)
            return
        if not chunk:
            self.lost(ConnectionError("the server closed the connection"))
            return
        self._inbox += chunk
        self.deadline = time.monotonic() + self.timeout
        while not self.dead:
            end = self._inbox.find(b"\n")
            if end < 0:
                return
            line = bytes(self._inbox[: end + 1])
            del self._inbox[: end + 1]
            # as smtplib.getreply reads it: "250-..." goes on, "250 ..." ends it
            self._reply.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                try:
                    code = int(line[:3])
                except ValueError:
                    code = -1
                text, self._reply = b"\n".join(self._reply), []
                self._answered(code, text)

    def writable(self) -> None:
        try:
            self._flush()
        except OSError as exc:
            self.lost(exc)

    def expire(self, now: float) -> None:
        if now >= self.deadline:
            self.lost(TimeoutError("timed out"))

    # -- the transaction ---------------------------------------------------------------

    def _answered(self, code: int, text: bytes) -> None:
        if self.phase is Phase.COMMANDS:
            self._command_reply(code, text)
        elif self.phase is Phase.CONTENT:
            key, self._key = self._key_now(), None
            early = self.wants_write  # it answered before the whole message was in
            self.phase = Phase.IDLE
            self.deadline = float("inf")
            if code == 421 or early:
                self.drop()  # closing, or out of step: this session is over
            self._report(key, None if code == 250 else refused(Stage.END_OF_DATA, code, text))
        elif self.phase is Phase.EMPTY:
            self._reset()
        elif self.phase is Phase.RESET:
            self.phase = Phase.IDLE
            self.deadline = float("inf")
        else:  # unasked (a 421 before closing an idle session): this session is over
            self.drop()

    def _command_reply(self, code: int, text: bytes) -> None:
        index = len(self._replies)
        self._replies.append((code, text))
        refusal = refusal_at(index, (code, text))
        self._refused = self._refused or refusal
        more = len(self._replies) < len(PIPELINE) and code != 421  # 421: it hangs up
        if more and self.pipelining:
            return
        if more and refusal is None:
            self._send(self._next.pop(0))
            return
        if self._refused is None:
            assert self._envelope is not None
            self.phase = Phase.CONTENT
            self._send(dot_stuffed(self._envelope.data))
            return
        stage, _, (code, text) = self._refused
        key, self._key = self._key_now(), None
        if code == 421:
            self.drop()
        elif len(self._replies) == len(PIPELINE) and self._replies[-1][0] == 354:
            # DATA accepted after MAIL or RCPT was refused: end the empty message
            self.phase = Phase.EMPTY
            self._send(b".\r\n")
        else:
            self._reset()
        self._report(key, refused(stage, code, text))

    def _reset(self) -> None:
        self.phase = Phase.RESET
        self._send(b"RSET\r\n")

    def lost(self, exc: BaseException) -> None:
        """The session broke (closed, reset, timed out): what it means for the message
        depends on how far it got."""
        phase, key, sent_all = self.phase, self._key, not self.wants_write
        self.drop()
        if key is None:
            return
        if phase is Phase.CONTENT:
            # the whole message went out: the server may have it
            self._report(key, in_doubt(exc) if sent_all else lost_before_content(exc))
        elif self._replies and self._refused is not None:
            stage, _, (code, text) = self._refused
            self._report(key, refused(stage, code, text))
        elif self._replies:
            self._report(key, lost_before_content(exc))
        elif not self._retried:
            # the server hung up while the session was idle, before MAIL was
            # answered: nothing was sent, so one more try on a fresh session is safe
            assert self._envelope is not None
            self._again(key, self._envelope)
        else:
            self._report(key, TemporaryFailure(f"connection dropped: {exc}"))

    def _key_now(self) -> str:
        assert self._key is not None
        return self._key

    # -- the socket --------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        self._out = self._out[self._at :] + data if self.wants_write else data
        self._at = 0
        self.deadline = time.monotonic() + self.timeout
        try:
            self._flush()
        except OSError as exc:
            self.lost(exc)

    def _flush(self) -> None:
        view = memoryview(self._out)
        while self._at < len(self._out):
            try:
                sent = self.sock.send(view[self._at : self._at + _CHUNK])
            except _BLOCKED:
                return
            self._at += sent
            self.deadline = time.monotonic() + self.timeout

    def drop(self) -> None:
        self.dead = True
        self.phase = Phase.IDLE
        self._key = None
        self.deadline = float("inf")
        with contextlib.suppress(OSError):
            self.session.close()

    def quit(self) -> None:
        """Say goodbye (best effort, without waiting long): the run is over."""
        if self.dead:
            return
        with contextlib.suppress(OSError, smtplib.SMTPException):
            self.sock.settimeout(1.0)
            self.session.quit()
        self.drop()


class Courier:
    """The loop: what the parent prepares is built ahead; what it releases goes out
    in release order over up to `connections` lines; outcomes go back in one write
    per round."""

    def __init__(
        self,
        settings: SMTPSettings,
        connections: int,
        build: Callable[[Any], Envelope],
        orders: Connection,
        results: Connection,
    ):
        self.settings = settings
        self.connections = connections
        self.build = build
        self.orders = orders
        self.results = results
        self._todo: dict[str, Any] = {}  # prepared, not yet built (in prepare order)
        self._built: dict[str, Envelope | str] = {}  # str: why it could not be built
        self._waiting: deque[tuple[str, bool]] = deque()  # released, in order (key, retried)
        self._lines: dict[int, Line] = {}  # by socket
        self._opening = 0
        self._opened: queue.SimpleQueue[smtplib.SMTP | TransportUnavailable] = queue.SimpleQueue()
        self._unavailable: TransportUnavailable | None = None
        self._answers: list[tuple[str, BaseException | None]] = []
        self._stopping = False
        self._tls = SharedTLS(settings)  # one context for every session
        self._wake_r, self._wake_w = os.pipe()  # an opening thread is done
        self._poll = select.poll()
        self._poll.register(orders.fileno(), select.POLLIN)
        self._poll.register(self._wake_r, select.POLLIN)
        self._orders_ready = select.poll()  # another order waiting, without a selector
        self._orders_ready.register(orders.fileno(), select.POLLIN)

    def run(self, flatten: Callable[[BaseException | None], Any]) -> None:
        while True:
            self._round(0 if self._todo else self._poll_timeout())
            if self._answers:
                answers, self._answers = self._answers, []
                try:
                    self.results.send([(key, flatten(error)) for key, error in answers])
                except OSError:
                    os._exit(0)  # the parent is gone
            if self._stopping and not self._waiting and not self._busy():
                break
            if self._todo:  # build ahead, one message a round: the lines stay answered
                key = next(iter(self._todo))
                self._build(key)
        for line in list(self._lines.values()):
            line.quit()

    def _round(self, timeout_ms: int | None) -> None:
        for fd, mask in self._poll.poll(timeout_ms):
            if fd == self.orders.fileno():
                self._read_orders()
            elif fd == self._wake_r:
                os.read(self._wake_r, 512)
                self._adopt()
            elif (line := self._lines.get(fd)) is not None:
                if mask & _IN:
                    line.readable()
                if not line.dead and mask & select.POLLOUT:
                    line.writable()
        now = time.monotonic()
        for line in list(self._lines.values()):
            if not line.dead:
                line.expire(now)
        self._dispatch()
        self._tidy()

    def _poll_timeout(self) -> int | None:
        deadline = min((line.deadline for line in self._lines.values()), default=float("inf"))
        if deadline == float("inf"):
            return None
        return max(0, int((deadline - time.monotonic()) * 1000) + 1)

    def _busy(self) -> bool:
        return any(line.phase is not Phase.IDLE for line in self._lines.values())

    # -- orders from the parent --------------------------------------------------------

    def _read_orders(self) -> None:
        while True:
            try:
                order = self.orders.recv()
            except (EOFError, OSError):
                os._exit(0)  # the parent is gone: stop at once, send nothing more
            if order is None:  # the run is over: what was only prepared is dropped
                self._stopping = True
                released = {key for key, _ in self._waiting}
                self._todo = {k: w for k, w in self._todo.items() if k in released}
            elif order[0] == "prepare":
                self._todo.update(order[1])
                self._open_more()
            else:
                _, keys, dropped = order
                self._waiting.extend((key, False) for key in keys)
                for key in dropped:
                    self._todo.pop(key, None)
                    self._built.pop(key, None)
            if not self._orders_ready.poll(0):
                return

    # -- building and sending ----------------------------------------------------------

    def _build(self, key: str) -> None:
        work = self._todo.pop(key)
        try:
            self._built[key] = self.build(work)
        except Exception as exc:  # this message fails alone, with its reason
            self._built[key] = str(exc) or type(exc).__name__

    def _dispatch(self) -> None:
        """Start the released messages, in order, on idle lines."""
        idle = [line for line in self._lines.values() if line.phase is Phase.IDLE and not line.dead]
        while self._waiting:
            key, retried = self._waiting[0]
            if self._unavailable is not None:  # never reached the relay: unsent
                self._waiting.popleft()
                self._built.pop(key, None)
                self._answers.append((key, self._unavailable))
                continue
            if key not in self._built:
                if key not in self._todo:  # pragma: no cover - the parent never does this
                    self._waiting.popleft()
                    self._answers.append((key, BuildFailed("released before it was prepared")))
                    continue
                self._build(key)  # next in line: build it now
            envelope = self._built[key]
            if isinstance(envelope, str):
                self._waiting.popleft()
                del self._built[key]
                self._answers.append((key, BuildFailed(envelope)))
                continue
            if not idle:
                self._open_more()
                return
            line = idle.pop()
            self._waiting.popleft()
            del self._built[key]
            try:
                line.start(key, envelope, retried)
            except Exception as exc:  # cannot go at all (needs SMTPUTF8, a bad address)
                self._answers.append((key, exc))
                idle.append(line)

    def _tidy(self) -> None:
        """Forget the lines that closed; watch for writes only where some are pending."""
        for fd, line in list(self._lines.items()):
            if line.dead:
                del self._lines[fd]
                with contextlib.suppress(KeyError):
                    self._poll.unregister(fd)
            else:
                self._poll.modify(fd, _IN | (select.POLLOUT if line.wants_write else 0))

    def _report(self, key: str, error: BaseException | None) -> None:
        self._answers.append((key, error))

    def _again(self, key: str, envelope: Envelope) -> None:
        self._built[key] = envelope
        self._waiting.appendleft((key, True))

    # -- opening sessions --------------------------------------------------------------

    def _open_more(self) -> None:
        """Sessions for the messages on their way to a line, up to `connections`:
        released, and prepared too (their claims are being committed meanwhile), so
        the relay's handshakes overlap the parent's planning and claiming."""
        if self._unavailable is not None:
            return
        live = idle = 0
        for line in self._lines.values():
            live += not line.dead
            idle += not line.dead and line.phase is Phase.IDLE
        coming = len(self._waiting) - idle
        if not self._stopping:  # after the stop order only the released still go
            coming += len(self._todo) + len(self._built)
        while self._opening < coming and live + self._opening < self.connections:
            self._opening += 1
            threading.Thread(target=self._open, name="drip-smtp-open", daemon=True).start()

    def _open(self) -> None:
        try:
            session: smtplib.SMTP | TransportUnavailable = open_session(self.settings, self._tls)
        except TransportUnavailable as exc:
            session = exc
        except Exception as exc:  # pragma: no cover - open_session wraps what it raises
            session = TransportUnavailable(f"cannot reach the SMTP server: {exc}")
        self._opened.put(session)
        os.write(self._wake_w, b".")

    def _adopt(self) -> None:
        while True:
            try:
                session = self._opened.get_nowait()
            except queue.Empty:
                return
            self._opening -= 1
            if isinstance(session, TransportUnavailable):
                self._unavailable = self._unavailable or session
                continue
            line = Line(session, self.settings.timeout, self._report, self._again)
            self._lines[line.fd] = line
            self._poll.register(line.fd, _IN)
