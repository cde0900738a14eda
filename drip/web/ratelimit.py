"""Sliding-window rate limits kept in this process's memory.

Used for signup attempts per client IP and per email address. In-process is
enough for one `drip serve` (waitress runs one process with threads); with
several processes each keeps its own count, so the effective limit multiplies.
The limit that matters most, one confirmation email per address per window, is
kept in the database instead (Subscriber.last_confirmation_sent_at) and holds
across processes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from .options import Limit


class RateLimiter:
    def __init__(self, limit: Limit, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def hit(self, key: str) -> bool:
        """Count one event for `key`; False when that goes over the limit."""
        now = self._clock()
        start = now - self.limit.seconds
        with self._lock:
            self._calls += 1
            if self._calls % 1000 == 0:
                self._forget_idle(start)
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= start:
                hits.popleft()
            if len(hits) >= self.limit.count:
                return False
            hits.append(now)
            return True

    def _forget_idle(self, start: float) -> None:
        """Drop keys with no recent events, so memory stays bounded."""
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= start]:
            del self._hits[key]
