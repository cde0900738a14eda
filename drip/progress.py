"""A progress line for long runs on a terminal: count, rate and time left.

Under cron (standard error is not a terminal) nothing is drawn; the run's one
summary line stays the only output.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Self, TextIO

REDRAW_EVERY = 0.2  # seconds


class Progress:
    def __init__(self, stream: TextIO, total: int = 0):
        self.stream, self.total = stream, total
        self.done = 0
        self._start = time.monotonic()
        self._drawn = 0.0

    @classmethod
    def for_terminal(cls, stream: TextIO | None = None) -> Progress | None:
        """A Progress when `stream` (standard error) is a terminal, else None."""
        stream = stream or sys.stderr
        return cls(stream) if stream.isatty() else None

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._drawn >= REDRAW_EVERY or self.done >= self.total:
            self._drawn = now
            self.stream.write("\r" + self.text(now - self._start) + "\033[K")
            self.stream.flush()

    def text(self, elapsed: float) -> str:
        rate = self.done / elapsed if elapsed > 0 else 0.0
        total = max(self.total, self.done)
        width = 24
        filled = int(width * self.done / total) if total else width
        left = (total - self.done) / rate if rate > 0 else 0.0
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done:,}/{total:,} emails  "
            f"{rate:,.0f}/s  ETA {int(left) // 60}:{int(left) % 60:02d}"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.done:
            self.stream.write("\n")
            self.stream.flush()
