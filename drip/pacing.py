"""A relay's rate limit, kept across every connection of a run (a token bucket).

Pure logic with the clock passed in. The bucket holds at most one second's worth
of messages (at least one), so a run never bursts above the relay's rate and a
claim is never made long before its message can go.
"""

from __future__ import annotations

from collections.abc import Callable


class Pacer:
    def __init__(self, per_second: float, clock: Callable[[], float]):
        self.per_second = per_second
        self.clock = clock
        self.capacity = max(1.0, per_second)
        self._tokens = 1.0  # the first message may go at once, the rest at the rate
        self._at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_second)
        self._at = now

    def take(self, wanted: int) -> int:
        """Take up to `wanted` messages' worth now; how many may go."""
        self._refill()
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return granted

    def wait(self) -> float:
        """Seconds until the next message may go."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.per_second)
