"""The send stage: carrying claimed messages to the relay.

Postman: worker threads, one SMTP connection each; the main thread hands over
(item, envelope) pairs and collects outcomes, and only it touches the database.
ProcessPostman (big runs of `drip send`): one child process that builds and sends
from an event loop (drip/courier.py).
SMTP is waiting, not computing, so threads overlap it well: throughput is about
connections / per-message latency.
After a worker finds the relay unreachable, every other message still queued
comes back unsent (TransportUnavailable), so its claim can be put back.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import select
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

from .message import BuildFailed, Envelope
from .replies import Refusal
from .transport import (
    DeliveryError,
    InDoubt,
    PermanentFailure,
    SMTPSettings,
    SMTPTransport,
    TemporaryFailure,
    Transport,
    TransportUnavailable,
)

T = TypeVar("T")
_STOP = object()


@dataclass(frozen=True)
class Outcome(Generic[T]):
    item: T
    error: BaseException | None  # None: the server took the message


class Postman(Generic[T]):
    failed: str | None = None  # threads cannot die alone: never set here

    def __init__(
        self,
        transport: Transport,
        workers: int,
        deliver: Callable[[Outcome[T]], None] | None = None,
    ):
        self.transport = transport
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue[Outcome[T]] = queue.SimpleQueue()
        # where each outcome goes from the connection's own thread (default: a queue
        # the caller reads with `outcomes`)
        self._deliver = deliver or self._outcomes.put
        self._unavailable: TransportUnavailable | None = None
        self._threads = [
            threading.Thread(target=self._work, name=f"drip-smtp-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def hand(self, batch: Sequence[tuple[T, Envelope]]) -> None:
        """Queue (item, envelope) pairs for the connections."""
        for pair in batch:
            self._inbox.put(pair)

    def outcomes(self, wait: float | None = 0) -> list[Outcome[T]]:
        """Every outcome ready now; with `wait`, first block up to that many seconds
        (None: until one arrives)."""
        found: list[Outcome[T]] = []
        if wait != 0:
            try:
                found.append(self._outcomes.get(timeout=wait))
            except queue.Empty:
                return found
        while True:
            try:
                found.append(self._outcomes.get_nowait())
            except queue.Empty:
                return found

    def _work(self) -> None:
        while True:
            task = self._inbox.get()
            if task is _STOP:
                return
            item, envelope = cast("tuple[T, Envelope]", task)
            error: BaseException | None = None
            if self._unavailable is not None:
                error = self._unavailable
            else:
                try:
                    self.transport.send(envelope)
                except TransportUnavailable as exc:
                    self._unavailable = error = exc
                except Exception as exc:  # recorded against this message; the run goes on
                    error = exc
            self._deliver(Outcome(item, error))

    def report(self, item: T, error: BaseException | None) -> None:
        """An outcome decided without the relay (e.g. a message that could not be built)."""
        self._deliver(Outcome(item, error))

    def stop(self) -> None:
        for _ in self._threads:
            self._inbox.put(_STOP)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ProcessPostman(Generic[T]):
    """The build and send stages in one child process, for big runs over SMTP.

    The child (drip/courier.py) renders and composes each message from the few
    plain values the parent hands it, *ahead* of the claim, and holds it until the
    parent, having committed the claim, releases it (or drops it: the claim was
    lost). Then it carries it to the relay over up to `workers` connections, from
    one thread with non-blocking sockets. So the parent keeps planning and the
    database, the child the CPU work of a message and its SMTP, each with an
    interpreter of its own, and building is off the path from claim to relay. A
    message the child cannot build comes back, once released, as a BuildFailed
    outcome.

    The child is forked (no re-import, the same templates and keys) and dies with
    the parent: a `kill -9` of `drip send` closes the pipe and it exits at once, so
    nothing unclaimed is ever sent, and the claimed, unrecorded messages are in
    doubt within the same bound as with threads.

    A child that dies alone (killed, out of memory) sets `failed`, and the run
    stops: what it had been released and never answered comes back InDoubt (it
    may have reached the relay); what is released after that comes back unsent
    (TransportUnavailable, so its claim is put back).
    """

    def __init__(self, settings: SMTPSettings, workers: int, build: Callable[[Any], Envelope]):
        context = multiprocessing.get_context("fork")
        # pipes are (reader, writer); each process closes the ends it does not use,
        # so a reader sees the end of its pipe once every writer is gone
        orders, self._orders = context.Pipe(duplex=False)  # parent -> child
        self._results, results = context.Pipe(duplex=False)  # child -> parent
        child = context.Process(
            target=_courier,
            args=(settings, workers, build, orders, results),
            kwargs={"unused": [self._orders, self._results]},
            name="drip-smtp",
            daemon=True,
        )
        child.start()
        self._child = child
        for end in (orders, results):
            end.close()
        # the results pipe is polled about twice an email: one poll object made once
        # (Connection.poll builds, registers and closes a selector on every call)
        self._answers = select.poll()
        self._answers.register(self._results.fileno(), select.POLLIN)
        self._items: dict[str, T] = {}
        self._released: set[str] = set()  # handed to the child, not yet answered
        self._unsent: list[Outcome[T]] = []  # decided here: the child is gone
        self.failed: str | None = None  # why the child ended before its time
        self._ended = False  # the child is gone and all it sent was read

    def prepare(self, batch: Sequence[tuple[str, T, Any]]) -> None:
        """(key, item, work) triples to build now, in one write; none is sent before
        `release` names it."""
        for key, item, _ in batch:
            self._items[key] = item
        if batch and self.failed is None:
            try:
                self._orders.send(("prepare", [(key, work) for key, _, work in batch]))
            except OSError:  # never claimed: the caller stops before it would be
                self.failed = SENDER_GONE

    def release(self, keys: Sequence[str], dropped: Sequence[str] = ()) -> None:
        """Send these prepared messages, in this order (their claims are committed);
        forget the `dropped` ones (their claims were lost)."""
        for key in dropped:
            del self._items[key]
        if not keys and not dropped:
            return
        try:
            if self.failed == SENDER_GONE:
                raise BrokenPipeError
            self._orders.send(("release", list(keys), list(dropped)))
        except OSError:  # these never reached the child: unsent, give them back
            self.failed = SENDER_GONE
            gone = TransportUnavailable(f"{SENDER_GONE}; this email was not sent")
            self._unsent.extend(Outcome(self._items.pop(key), gone) for key in keys)
            return
        self._released.update(keys)

    def outcomes(self, wait: float | None = 0) -> list[Outcome[T]]:
        found, self._unsent = self._unsent, []
        if not self._ended:
            try:
                if self._answered(0 if found else wait):
                    while True:
                        for key, error in self._results.recv():
                            self._released.discard(key)
                            found.append(Outcome(self._items.pop(key), _revive(error)))
                        if not self._answered(0):
                            break
            except (EOFError, OSError):  # every outcome it sent was read before this
                self._ended = True
                self.failed = SENDER_GONE
        if self._ended:  # what the child had and never answered is in doubt
            doubt = InDoubt(f"{SENDER_GONE} before reporting this email; the relay may have it")
            found.extend(Outcome(self._items.pop(key), doubt) for key in sorted(self._released))
            self._released.clear()
        return found

    def _answered(self, wait: float | None) -> bool:
        """Has the child written an outcome, or closed its end (then recv raises
        EOFError)? Waits up to `wait` seconds (None: until it has)."""
        return bool(self._answers.poll(None if wait is None else wait * 1000))

    def stop(self) -> None:
        """Let the released messages go, drop what was only prepared, and wait."""
        with contextlib.suppress(OSError):
            self._orders.send(None)
        self._child.join(60)
        if self._child.is_alive():  # pragma: no cover - a wedged child
            self._child.kill()
        for end in (self._orders, self._results):
            end.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


SENDER_GONE = "the sending process ended unexpectedly (killed?)"


def _in_child(unused: Sequence[Connection]) -> None:
    """Be killed the moment the parent dies (Linux; belt and braces with the pipes),
    leave Ctrl-C to the parent (it stops the run; here it would only print a
    traceback), and let go of the pipe ends this process does not use."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    for end in unused:
        end.close()


def _courier(
    settings: SMTPSettings,
    workers: int,
    build: Callable[[Any], Envelope],
    orders: Connection,
    results: Connection,
    unused: Sequence[Connection],
) -> None:
    """The child: build what is prepared, send what is released (drip/courier.py)."""
    _in_child(unused)
    from .courier import Courier

    Courier(settings, workers, build, orders, results).run(_flatten)
    os._exit(0)


def _flatten(error: BaseException | None) -> tuple[Any, ...] | None:
    """A delivery error as plain values (exceptions with keyword state do not pickle)."""
    if error is None:
        return None
    if isinstance(error, PermanentFailure):
        refusal = astuple(error.refusal) if error.refusal else None
        return ("permanent", str(error), error.code, error.bounce, refusal)
    for kind, cls in _KINDS.items():
        if isinstance(error, cls):
            return (kind, str(error), getattr(error, "code", None))
    return ("error", f"{type(error).__name__}: {error}", None)


def _revive(flat: tuple[Any, ...] | None) -> BaseException | None:
    if flat is None:
        return None
    kind, message, code = flat[:3]
    if kind == "permanent":
        refusal = Refusal(*flat[4]) if flat[4] else None
        return PermanentFailure(message, code, bounce=flat[3], refusal=refusal)
    if kind in _KINDS:
        return _KINDS[kind](message, code)
    return RuntimeError(message)


_KINDS: dict[str, type[DeliveryError] | type[BuildFailed]] = {
    "build": BuildFailed,
    "temporary": TemporaryFailure,
    "in_doubt": InDoubt,
    "unavailable": TransportUnavailable,
}


def make_postman(
    transport: Transport,
    workers: int,
    separate_process: bool,
    build: Callable[[Any], Envelope],
) -> Any:
    """A ProcessPostman for SMTP when asked for (big runs: `build` then runs in the
    builder child), else threads here (the caller builds)."""
    if separate_process and isinstance(transport, SMTPTransport):
        return ProcessPostman(transport.settings, workers, build)
    return Postman(transport, workers)
