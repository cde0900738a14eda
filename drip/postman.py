"""The send stage: worker threads, one SMTP connection each, carrying claimed messages.

The main thread hands over (item, envelope) pairs and collects outcomes; only
the main thread touches the database. SMTP is waiting, not computing, so threads
overlap it well: throughput is about connections / per-message latency.
After a worker finds the relay unreachable, every other message still queued
comes back unsent (TransportUnavailable), so its claim can be put back.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
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

    def report(self, item: T, error: BaseException | None) -> None:
        """An outcome decided without the relay (e.g. a message that could not be built)."""
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
    """The send stage in child processes, for big runs over SMTP.

    The sending child holds `workers` connections (one thread each, waiting on the
    relay). With `build`, a second child renders and composes every message from
    the few plain values the parent hands it and passes it on to the sending child,
    so the parent keeps planning and the database, the builder the CPU work of a
    message, each with an interpreter of its own. (Building in the sending child
    was measured slower: its connection threads and the builder fought over one
    interpreter lock.) A message the builder cannot build comes back as a
    BuildFailed outcome. The children are forked (no re-import, the same templates
    and keys) and die with the parent: a `kill -9` of `drip send` closes the pipes
    and they exit at once (its unrecorded claims are then in doubt, within the same
    bound as with threads).
    """

    def __init__(
        self,
        settings: SMTPSettings,
        workers: int,
        build: Callable[[Any], Envelope] | None = None,
    ):
        self.build = build
        context = multiprocessing.get_context("fork")
        # pipes are (reader, writer); every process closes the ends it does not use,
        # so that a reader sees the end of its pipe once its writers are gone
        sender_tasks, to_sender = context.Pipe(duplex=False)
        self._results, results = context.Pipe(duplex=False)
        builder_tasks, to_builder = context.Pipe(duplex=False) if build else (None, None)
        self._children = [
            context.Process(
                target=_sender,
                args=(settings, workers, sender_tasks, results),
                kwargs={"unused": [to_sender, self._results, builder_tasks, to_builder]},
                name="drip-smtp",
                daemon=True,
            )
        ]
        self._children[0].start()
        sender_tasks.close()
        results.close()
        self._tasks = to_sender
        if build is not None:
            assert builder_tasks is not None and to_builder is not None
            builder = context.Process(
                target=_builder,
                args=(build, builder_tasks, to_sender),
                kwargs={"unused": [to_builder, self._results]},
                name="drip-build",
                daemon=True,
            )
            builder.start()
            self._children.insert(0, builder)  # stopped first, it stops the sender
            builder_tasks.close()
            to_sender.close()
            self._tasks = to_builder
        self._items: dict[int, T] = {}
        self._next = 0

    def hand(self, batch: Sequence[tuple[T, Any]]) -> None:
        """(item, work) pairs, in one write to the child (a pipe write wakes it: one
        per batch, not per message). `work`: the Envelope, or with `build`, what the
        builder builds it from."""
        tasks: list[tuple[Any, ...]] = []
        for item, work in batch:
            self._next += 1
            self._items[self._next] = item
            if self.build is None:
                tasks.append((self._next, work.sender, work.recipient, work.data))
            else:
                tasks.append((self._next, work))
        if tasks:
            self._tasks.send(tasks)

    def outcomes(self, wait: float | None = 0) -> list[Outcome[T]]:
        found: list[Outcome[T]] = []
        if not self._results.poll(wait):
            return found
        while True:
            for key, error in self._results.recv():
                found.append(Outcome(self._items.pop(key), _revive(error)))
            if not self._results.poll(0):
                return found

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._tasks.send(None)  # the builder passes it on to the sender
        for child in self._children:
            child.join(60)
            if child.is_alive():  # pragma: no cover - a wedged child
                child.kill()
        self._tasks.close()
        self._results.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _in_child(unused: Sequence[Connection | None]) -> None:
    """Be killed the moment the parent dies (Linux; belt and braces with the pipes),
    and let go of the pipe ends this process does not use."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    for end in unused:
        if end is not None:
            end.close()


def _builder(
    build: Callable[[Any], Envelope],
    tasks: Connection,
    sender: Connection,
    unused: Sequence[Connection | None],
) -> None:
    """Build each batch of messages and pass it on to the sending child in one write;
    a message that cannot be built goes on as its reason alone."""
    _in_child(unused)
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            os._exit(0)  # the parent is gone: stop at once
        if task is None:
            sender.send(None)
            os._exit(0)
        built: list[tuple[Any, ...]] = []
        for key, work in task:
            try:
                envelope = build(work)
            except Exception as exc:  # this message fails alone, with its reason
                built.append((key, str(exc) or type(exc).__name__))
            else:
                built.append((key, envelope.sender, envelope.recipient, envelope.data))
        sender.send(built)


def _sender(
    settings: SMTPSettings,
    workers: int,
    tasks: Connection,
    results: Connection,
    unused: Sequence[Connection | None],
) -> None:
    _in_child(unused)
    transport = SMTPTransport(settings)
    postman: Postman[int] = Postman(transport, workers)

    def forward() -> None:  # outcomes back to the parent as they come, those ready together
        while True:
            found = postman.outcomes(None)
            done = [(o.item, _flatten(o.error)) for o in found if o.item != 0]
            if done:
                results.send(done)
            if len(done) < len(found):
                return

    forwarder = threading.Thread(target=forward, daemon=True)
    forwarder.start()
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            os._exit(0)  # the parent is gone: stop at once, send nothing more
        if task is None:
            break
        envelopes = []
        for key, *work in task:
            if len(work) == 1:  # the builder could not build it: its reason
                postman.report(key, BuildFailed(work[0]))
            else:
                envelopes.append((key, Envelope(*work)))
        postman.hand(envelopes)
    postman.stop()
    postman.report(0, None)  # let the forwarder finish
    forwarder.join()
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
    build: Callable[[Any], Envelope] | None = None,
) -> Any:
    """A ProcessPostman for SMTP when asked for (big runs; `build` then runs in the
    child), else threads here (the caller builds)."""
    if separate_process and isinstance(transport, SMTPTransport):
        return ProcessPostman(transport.settings, workers, build)
    return Postman(transport, workers)
