"""Reading the `--now` option every time-aware command takes (simulated clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import click


def parse_now(value: str | None) -> datetime | None:
    """--now accepts ISO-8601; a time without a zone is taken as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 time like 2026-03-01T09:30 or 2026-03-01T09:30:00+01:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
