"""The demo clock: real time plus an offset the mail catcher's buttons move forward."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta


class DemoClock:
    """Real time plus an offset the demo's buttons move forward."""

    def __init__(self, now: Callable[[], datetime]):
        self._now = now
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now() + self._offset

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += max(delta, timedelta(0))
