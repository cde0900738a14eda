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

    def __init__(self, transport: Transport, workers: int):
        self.transport = transport
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue[Outcome[T]] = queue.SimpleQueue()
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
            self._outcomes.put(Outcome(item, error))

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

    def __init__(
        self,
        settings: SMTPSettings,
        workers: int,
        build: Callable[[Any], Envelope],
        children: int = 1,
    ):
        context = multiprocessing.get_context("fork")
        count = max(1, min(children, workers))
        self._children: list[_Child] = []
        for i in range(count):
            share = workers // count + (i < workers % count)  # its connections
            self._children.append(_Child(context, settings, share, build, self._children))
        # the results pipes are polled about twice an email: one poll object made once
        # (Connection.poll builds, registers and closes a selector on every call)
        self._answers = select.poll()
        self._by_fd: dict[int, _Child] = {}
        for child in self._children:
            self._answers.register(child.results.fileno(), select.POLLIN)
            self._by_fd[child.results.fileno()] = child
        self._items: dict[str, T] = {}
        self._route: dict[str, _Child] = {}  # which child builds and sends a message
        self._turn = 0
        self._unsent: list[Outcome[T]] = []  # decided here: the child is gone
        self.failed: str | None = None  # why a child ended before its time

    def prepare(self, batch: Sequence[tuple[str, T, Any]]) -> None:
        """(key, item, work) triples to build now, in one write per child; none is
        sent before `release` names it. The children take turns, message by message."""
        shares: dict[int, list[tuple[str, Any]]] = {}
        for key, item, work in batch:
            self._items[key] = item
            child = self._children[self._turn % len(self._children)]
            self._turn += 1
            self._route[key] = child
            shares.setdefault(id(child), []).append((key, work))
        for child in self._children:
            share = shares.get(id(child))
            if share and not child.gone:
                try:
                    child.orders.send(("prepare", share))
                except OSError:  # never claimed: the caller stops before it would be
                    self._lose(child)

    def release(self, keys: Sequence[str], dropped: Sequence[str] = ()) -> None:
        """Send these prepared messages, in this order (their claims are committed);
        forget the `dropped` ones (their claims were lost)."""
        orders: dict[int, tuple[list[str], list[str]]] = {}
        for key in keys:
            orders.setdefault(id(self._route[key]), ([], []))[0].append(key)
        for key in dropped:
            del self._items[key]
            orders.setdefault(id(self._route.pop(key)), ([], []))[1].append(key)
        for child in self._children:
            if id(child) not in orders:
                continue
            mine, lost = orders[id(child)]
            try:
                if child.gone:
                    raise BrokenPipeError
                child.orders.send(("release", mine, lost))
            except OSError:  # these never reached the child: unsent, give them back
                self._lose(child)
                gone = TransportUnavailable(f"{SENDER_GONE}; this email was not sent")
                self._unsent.extend(Outcome(self._forget(key), gone) for key in mine)
                continue
            child.released.update(mine)

    def outcomes(self, wait: float | None = 0) -> list[Outcome[T]]:
        found, self._unsent = self._unsent, []
        for child in self._ready(0 if found else wait):
            try:
                while True:
                    for key, error in child.results.recv():
                        child.released.discard(key)
                        found.append(Outcome(self._forget(key), _revive(error)))
                    if not child.more.poll(0):
                        break
            except (EOFError, OSError):  # every outcome it sent was read before this
                self._lose(child)
                self._answers.unregister(child.results.fileno())
                # what the child had and never answered is in doubt
                doubt = InDoubt(f"{SENDER_GONE} before reporting this email; the relay may have it")
                found.extend(Outcome(self._forget(k), doubt) for k in sorted(child.released))
                child.released.clear()
        return found

    def _forget(self, key: str) -> T:
        self._route.pop(key, None)
        return self._items.pop(key)

    def _lose(self, child: _Child) -> None:
        child.gone = True
        self.failed = SENDER_GONE

    def _ready(self, wait: float | None) -> list[_Child]:
        """The children that wrote outcomes or closed their end (then recv raises
        EOFError), waiting up to `wait` seconds for one (None: until one has)."""
        if all(child.ended for child in self._children):
            return []
        timeout = None if wait is None else wait * 1000
        return [self._by_fd[fd] for fd, _ in self._answers.poll(timeout)]

    def stop(self) -> None:
        """Let the released messages go, drop what was only prepared, and wait."""
        for child in self._children:
            with contextlib.suppress(OSError):
                child.orders.send(None)
        for child in self._children:
            child.process.join(60)
            if child.process.is_alive():  # pragma: no cover - a wedged child
                child.process.kill()
            for end in (child.orders, child.results):
                end.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


SENDER_GONE = "the sending process ended unexpectedly (killed?)"
SENDING_CHILDREN = 1  # two measured slower on two cores (the parent needs one)


class _Child:
    """One forked sending child and the parent's ends of its two pipes."""

    def __init__(
        self,
        context: Any,
        settings: SMTPSettings,
        connections: int,
        build: Callable[[Any], Envelope],
        siblings: Sequence[_Child],
    ):
        # pipes are (reader, writer); each process closes the ends it does not use,
        # so a reader sees the end of its pipe once every writer is gone
        orders, self.orders = context.Pipe(duplex=False)  # parent -> child
        self.results, results = context.Pipe(duplex=False)  # child -> parent
        unused = [self.orders, self.results]
        for sibling in siblings:  # forked later, it must not hold its siblings' pipes
            unused += [sibling.orders, sibling.results]
        self.process = context.Process(
            target=_courier,
            args=(settings, connections, build, orders, results),
            kwargs={"unused": unused},
            name="drip-smtp",
            daemon=True,
        )
        self.process.start()
        for end in (orders, results):
            end.close()
        self.more = select.poll()  # another outcome waiting (without a selector a call)
        self.more.register(self.results.fileno(), select.POLLIN)
        self.released: set[str] = set()  # handed to it, not yet answered
        self.gone = False  # it ended (or its pipe broke) before its time

    @property
    def ended(self) -> bool:
        return self.gone and not self.released


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
    """The child: build what is prepared, send what is released (drip/courier.py).
    Done, it returns to multiprocessing, which ends the process without the
    parent's exit handlers (and lets a coverage run save what this child ran)."""
    _in_child(unused)
    from .courier import Courier

    Courier(settings, workers, build, orders, results).run(_flatten)


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
    sending children), else threads here (the caller builds)."""
    if separate_process and isinstance(transport, SMTPTransport):
        return ProcessPostman(transport.settings, workers, build, children=SENDING_CHILDREN)
    return Postman(transport, workers)
