"""CLI commands imported only when they run, so cron's `drip send` never loads Flask.

`drip --help` lists a lazy command by the short help given here; running it (or
asking for its own `--help`) imports the real click command and hands over.
"""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyCommand(click.Command):
    """Stands in for the click command at `target` ("package.module:attribute")."""

    def __init__(self, name: str, target: str, short_help: str):
        self._target = target
        self._real: click.Command | None = None
        super().__init__(name, short_help=short_help, help=short_help)

    def load(self) -> click.Command:
        """The real command (imported on first use); tests read its options from it."""
        if self._real is None:
            module, _, attribute = self._target.partition(":")
            self._real = getattr(importlib.import_module(module), attribute)
        return self._real

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        return self.load().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        return self.load().invoke(ctx)
