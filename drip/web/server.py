"""Serving the app with waitress, and the scheduler that `drip run` adds to it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from waitress.server import create_server

from . import jobs
from .services import Services

log = logging.getLogger("drip.web")


def setup_logging() -> None:
    """Log lines to stderr, unless the host program configured logging already."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line a minute otherwise


def make_server(app: Flask, host: str, port: int, threads: int = 8):  # type: ignore[no-untyped-def]
    """A waitress server bound now (so port 0 picks a free port); call .run() to serve."""
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="drip",
        # the app enforces its own, smaller limit; this stops huge bodies early
        max_request_body_size=1024 * 1024,
        # X-Forwarded-* are handled by ProxyFix in the app, only when configured
        clear_untrusted_proxy_headers=False,
    )


def start_scheduler(
    services: Services, every_seconds: float = 60, send: bool = True, watch_seconds: float = 5
) -> BackgroundScheduler:
    """Every minute: purge expired signups, then what `drip send` does, under SendLock.

    One job at a time (max_instances=1), missed runs coalesce into one, and the
    lock makes a concurrent cron `drip send` and this job skip rather than overlap.
    With services.watch() on, every few seconds: look for an edit of campaigns.toml.
    """
    scheduler = BackgroundScheduler(timezone=UTC)
    if services.live is not None:
        scheduler.add_job(
            services.refresh_config,
            "interval",
            seconds=watch_seconds,
            id="drip-config",
            max_instances=1,
            coalesce=True,
        )
    if send:
        scheduler.add_job(
            jobs.scheduled_run,
            "interval",
            seconds=every_seconds,
            args=[services],
            id="drip-send",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(int(every_seconds), 1),
            next_run_time=datetime.now(UTC),
        )
    scheduler.start()
    if send:
        log.info("scheduler: sending what is due every %g seconds", every_seconds)
    return scheduler
