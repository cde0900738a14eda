"""campaigns.toml and templates, reloaded by long-running processes when they change.

`drip run` and `drip serve` load the files once at start. A LiveConfig notices an
edit cheaply (the names, sizes and modification times of the files, looked at
no more than every few seconds), then loads and checks the new version like
`drip send`'s pre-flight check does. A good version replaces the old one; a
broken one is reported in one log line and the last good version stays in use,
so a typo never takes the signup page down or stops the sending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from .config import Config, ConfigError, load_config
from .preflight import fingerprint, preflight
from .render import Renderer

log = logging.getLogger("drip")

Stamp = tuple[tuple[str, int, int], ...]


def stamp(config: Config) -> Stamp:
    """Names, sizes and modification times of campaigns.toml and every template file."""
    paths = [config.path]
    templates = config.templates_dir.parent  # emails/ and newsletters/
    if templates.is_dir():
        paths += sorted(p for p in templates.rglob("*") if p.is_file())
    found = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:  # removed while we looked: that is a change too
            continue
        found.append((str(path), info.st_size, info.st_mtime_ns))
    return tuple(found)


class LiveConfig:
    """The last good campaigns.toml + templates, and a renderer compiled from them."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        *,
        every: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[Config, Renderer], None] | None = None,
    ):
        self.config, self.engine, self.every = config, engine, every
        self.renderer = Renderer(config.templates_dir)
        self.monotonic = monotonic
        self.on_change = on_change
        self._stamp = stamp(config)
        self._fingerprint = fingerprint(config)
        self._rejected: str | None = None  # the broken version's fingerprint, reported once
        self._checked = monotonic()
        self._lock = threading.Lock()  # the scheduler and the watcher may both ask

    @property
    def path(self) -> Path:
        return self.config.path

    def refresh(self, force: bool = False) -> bool:
        """Switch to the files on disk if they changed and pass the check; True if switched."""
        with self._lock:
            if not force and self.monotonic() - self._checked < self.every:
                return False
            self._checked = self.monotonic()
            now_stamp = stamp(self.config)
            if now_stamp == self._stamp:
                return False
            self._stamp = now_stamp
            try:
                print_ = fingerprint(self.config)
            except OSError as exc:  # campaigns.toml moved away mid-edit
                return self._reject(f"{self.path.name} cannot be read ({exc})", None)
            if print_ in (self._fingerprint, self._rejected):
                return False
            try:
                config = load_config(self.path)
            except ConfigError as exc:
                return self._reject(_first([str(p) for p in exc.problems] or [str(exc)]), print_)
            renderer = Renderer(config.templates_dir)
            problems = preflight(config, self.engine, renderer)  # and remembers a pass
            if problems:
                return self._reject(_first(problems), print_)
            self.config, self.renderer = config, renderer
            self._fingerprint, self._rejected = print_, None
            log.info("%s changed: now using the new version", self.path.name)
            if self.on_change is not None:
                self.on_change(config, renderer)
            return True

    def _reject(self, problem: str, print_: str | None) -> bool:
        self._rejected = print_
        log.error(
            "%s was edited but cannot be used: %s; still using the last good version",
            self.path.name,
            problem,
        )
        return False


def _first(problems: list[str]) -> str:
    """The first problem, and how many more: one log line, never a screenful."""
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more, see `drip check`)" if more > 0 else "")
