"""The send stage: worker threads, one SMTP connection each, carrying claimed messages.

The main thread hands over (item, envelope) pairs and collects outcomes; only
the main thread touches the database. SMTP is waiting, not computing, so threads
overlap it well: throughput is about connections / per-message latency.
After a worker finds the relay unreachable, every other message still queued
comes back unsent (TransportUnavailable), so its claim can be put back.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Self, TypeVar

from .message import Envelope
from .transport import Transport, TransportUnavailable

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

    def hand(self, item: T, envelope: Envelope) -> None:
        self._inbox.put((item, envelope))

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
            item, envelope = task  # type: ignore[misc]
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
