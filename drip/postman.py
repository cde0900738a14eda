"""The send stage: worker threads, one SMTP connection each, carrying claimed messages.

Postman: the main thread hands over (item, envelope) pairs and collects
outcomes; only the main thread touches the database. ProcessPostman (big runs):
the same threads in a child process, fed by a builder process (see there).
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
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from multiprocessing.connection import Connection, wait
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
    """The build and send stages in two child processes, for big runs over SMTP.

    The builder renders and composes each message from the few plain values the
    parent hands it, *ahead* of the claim, and passes the bytes on to the sending
    child, which holds them until the parent, having committed the claim, releases
    them (or drops them: the claim was lost). The sending child has `workers`
    connections, one thread each, waiting on the relay. So the parent keeps
    planning and the database, the builder the CPU work of a message, each with an
    interpreter of its own (building in the sending child was measured slower: its
    connection threads and the builder fought over one interpreter lock), and
    building is off the path from claim to relay. A message the builder cannot
    build comes back, once released, as a BuildFailed outcome.

    Both children are forked (no re-import, the same templates and keys) and die
    with the parent: a `kill -9` of `drip send` closes the pipes and they exit at
    once, so nothing unclaimed is ever sent, and the claimed, unrecorded messages
    are in doubt within the same bound as with threads.

    A child that dies alone (killed, out of memory) sets `failed`, and the run
    stops: what the builder never built comes back unsent (TransportUnavailable, so
    its claim is put back); what the sending child had been given and never
    answered comes back InDoubt (it may have reached the relay).
    """

    def __init__(self, settings: SMTPSettings, workers: int, build: Callable[[Any], Envelope]):
        context = multiprocessing.get_context("fork")
        # pipes are (reader, writer); each process closes the ends it does not use,
        # so a reader sees the end of its pipe once every writer is gone
        builder_tasks, self._builds = context.Pipe(duplex=False)  # parent -> builder
        built, to_sender = context.Pipe(duplex=False)  # builder -> sender
        orders, self._orders = context.Pipe(duplex=False)  # parent -> sender
        self._results, results = context.Pipe(duplex=False)  # sender -> parent
        ends = [builder_tasks, self._builds, built, to_sender, orders, self._orders, results]
        sender = context.Process(
            target=_sender,
            args=(settings, workers, built, orders, results),
            kwargs={"unused": [e for e in ends if e not in (built, orders, results)]},
            name="drip-smtp",
            daemon=True,
        )
        builder = context.Process(
            target=_builder,
            args=(build, builder_tasks, to_sender),
            kwargs={"unused": [e for e in ends if e not in (builder_tasks, to_sender)]},
            name="drip-build",
            daemon=True,
        )
        self._children = [builder, sender]
        for child in self._children:
            child.start()
        for end in (builder_tasks, built, to_sender, orders, results):
            end.close()
        # the results pipe is polled about twice an email: one poll object made once
        # (Connection.poll builds, registers and closes a selector on every call)
        self._answers = select.poll()
        self._answers.register(self._results.fileno(), select.POLLIN)
        self._items: dict[str, T] = {}
        self._released: set[str] = set()  # handed to the sending child, not yet answered
        self._unsent: list[Outcome[T]] = []  # decided here: the sending child is gone
        self.failed: str | None = None  # why a child ended before its time
        self._ended = False  # the sending child is gone and all it sent was read

    def prepare(self, batch: Sequence[tuple[str, T, Any]]) -> None:
        """(key, item, work) triples to build now, in one write to the builder; none
        is sent before `release` names it."""
        for key, item, _ in batch:
            self._items[key] = item
        if batch and self.failed is None:
            try:
                self._builds.send([(key, work) for key, _, work in batch])
            except OSError:  # never claimed: the caller stops before it would be
                self.failed = BUILDER_GONE

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
            self._orders.send((list(keys), list(dropped)))
        except OSError:  # these never reached the sending child: unsent, give them back
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
        if self._ended:  # what the sending child had and never answered is in doubt
            doubt = InDoubt(f"{SENDER_GONE} before reporting this email; the relay may have it")
            found.extend(Outcome(self._items.pop(key), doubt) for key in sorted(self._released))
            self._released.clear()
        return found

    def _answered(self, wait: float | None) -> bool:
        """Has the sending child written an outcome, or closed its end (then recv
        raises EOFError)? Waits up to `wait` seconds (None: until it has)."""
        return bool(self._answers.poll(None if wait is None else wait * 1000))

    def stop(self) -> None:
        """Let the released messages go, drop what was only prepared, and wait."""
        for end in (self._builds, self._orders):
            with contextlib.suppress(OSError):
                end.send(None)
        for child in self._children:
            child.join(60)
            if child.is_alive():  # pragma: no cover - a wedged child
                child.kill()
        for end in (self._builds, self._orders, self._results):
            end.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


BUILDER_GONE = "the build process ended unexpectedly (killed?)"
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


def _builder(
    build: Callable[[Any], Envelope],
    tasks: Connection,
    sender: Connection,
    unused: Sequence[Connection],
) -> None:
    """Build each batch and pass it on to the sending child in one write; a message
    that cannot be built goes on as its reason alone."""
    _in_child(unused)
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            os._exit(0)  # the parent is gone: stop at once
        if task is None:
            os._exit(0)
        built: list[tuple[Any, ...]] = []
        for key, work in task:
            try:
                envelope = build(work)
            except Exception as exc:  # this message fails alone, with its reason
                built.append((key, str(exc) or type(exc).__name__))
            else:
                built.append((key, envelope.sender, envelope.recipient, envelope.data))
        try:
            sender.send(built)
        except OSError:
            os._exit(0)  # the sending child is gone; the parent sees it too


def _sender(
    settings: SMTPSettings,
    workers: int,
    built: Connection,
    orders: Connection,
    results: Connection,
    unused: Sequence[Connection],
) -> None:
    """Hold what the builder built until the parent releases it, then send it."""
    _in_child(unused)
    transport = SMTPTransport(settings)
    lock = threading.Lock()

    def forward(outcome: Outcome[str]) -> None:  # from each connection's thread, at once
        flat = (outcome.item, _flatten(outcome.error))
        with lock, contextlib.suppress(OSError):  # parent gone: the main loop ends it
            results.send([flat])

    postman: Postman[str] = Postman(transport, workers, deliver=forward)
    held: dict[str, Envelope | str] = {}  # built, not yet released (str: why it was not)
    waiting: deque[str] = deque()  # released, in order, some maybe not yet built
    dropped: set[str] = set()  # dropped before the builder was done with them
    unbuilt = TransportUnavailable(f"{BUILDER_GONE} before building this email; not sent")

    def go() -> None:  # hand over the released messages that are built, in order
        ready = []
        # once the builder is gone, what it did not build never will be: unsent
        while waiting and (waiting[0] in held or built not in inputs):
            key = waiting.popleft()
            envelope = held.pop(key, None)
            if envelope is None:
                postman.report(key, unbuilt)
                continue
            if isinstance(envelope, str):
                postman.report(key, BuildFailed(envelope))
            else:
                ready.append((key, envelope))
        postman.hand(ready)

    inputs = [built, orders]
    while orders in inputs or (waiting and built in inputs):
        for end in cast("list[Connection]", wait(inputs)):
            message: Any
            try:
                message = end.recv()
            except (EOFError, OSError):
                if end is orders:
                    os._exit(0)  # the parent is gone: stop at once, send nothing more
                message = None
            if message is None:
                inputs.remove(end)
            elif end is built:
                for key, *work in message:
                    if key in dropped:
                        dropped.discard(key)
                    else:
                        held[key] = work[0] if len(work) == 1 else Envelope(*work)
            else:
                keys, lost = message
                waiting.extend(keys)
                for key in lost:
                    if held.pop(key, None) is None:
                        dropped.add(key)
            go()
    postman.stop()
    transport.close()
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
