"""CLI commands for the web side, registered on the main `drip` group."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add the web commands (serve, run) to `main`."""
