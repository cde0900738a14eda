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
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

from .message import Envelope
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
    """The send stage in a child process, for big runs over SMTP.

    Rendering, composing and the database keep one core busy; smtplib's own work
    (~0.3 ms a message) then runs on the other instead of waiting for the same
    interpreter lock. (Rendering in the child too was measured slower: its
    threads then fight over the child's lock, 1.8 against 1.4 ms of CPU per email.)
    The child is forked (no re-import), holds `workers` connections, and dies with
    its parent: a `kill -9` of `drip send` closes the pipe, and the child exits at
    once (its unrecorded claims are then in doubt, within the same bound as with
    threads).
    """

    def __init__(self, settings: SMTPSettings, workers: int):
        context = multiprocessing.get_context("fork")
        child_tasks, self._tasks = context.Pipe(duplex=False)  # (reader, writer)
        self._results, child_results = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child,
            args=(settings, workers, self._tasks, child_tasks, child_results),
            name="drip-smtp",
            daemon=True,
        )
        self._process.start()
        child_tasks.close()
        child_results.close()
        self._items: dict[int, T] = {}
        self._next = 0

    def hand(self, batch: Sequence[tuple[T, Envelope]]) -> None:
        """(item, envelope) pairs, in one write to the child (a pipe write wakes it:
        one per batch, not per message)."""
        tasks = []
        for item, envelope in batch:
            self._next += 1
            self._items[self._next] = item
            tasks.append((self._next, envelope.sender, envelope.recipient, envelope.data))
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
            self._tasks.send(None)
        self._process.join(60)
        if self._process.is_alive():  # pragma: no cover - a wedged child
            self._process.kill()
        self._tasks.close()
        self._results.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _die_with_parent() -> None:
    """Linux: be killed the moment the parent dies (belt and braces with the pipe)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child(
    settings: SMTPSettings,
    workers: int,
    parent_end: Connection,
    tasks: Connection,
    results: Connection,
) -> None:
    _die_with_parent()
    parent_end.close()
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
        postman.hand(
            [(key, Envelope(sender, recipient, data)) for key, sender, recipient, data in task]
        )
    postman.stop()
    postman._outcomes.put(Outcome(0, None))  # let the forwarder finish
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


_KINDS: dict[str, type[DeliveryError]] = {
    "temporary": TemporaryFailure,
    "in_doubt": InDoubt,
    "unavailable": TransportUnavailable,
}


def make_postman(transport: Transport, workers: int, separate_process: bool) -> Any:
    """A ProcessPostman for SMTP when asked for (big runs), else threads here."""
    if separate_process and isinstance(transport, SMTPTransport):
        return ProcessPostman(transport.settings, workers)
    return Postman(transport, workers)
