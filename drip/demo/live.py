"""`drip demo`, second part: the live demo on this computer.

The web app on 127.0.0.1, the scheduler of `drip run`, and a local mail catcher
(a real SMTP server) whose page shows every email as the patient sees it, with
buttons that move the demo clock on, so a newcomer can sign up, confirm, watch
the series arrive and unsubscribe.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .. import db
from ..config import load_config
from ..mailqueue import MailLimits
from ..transport import SMTPTransport
from ..web.app import create_app
from ..web.options import WebOptions
from ..web.server import make_server, start_scheduler
from ..web.services import Services
from . import pages
from .catcher import MailCatcher
from .clock import DemoClock
from .sample import DEMO_SECRET, demo_newsletters

# Libraries whose INFO lines are chatter to a newcomer: aiosmtpd logs every SMTP
# command and an alarming "Connection lost during _handle_client()" after each
# normal QUIT; alembic logs each migration of the fresh demo database. Their
# warnings and errors still show.
QUIET_LOGGERS = ("mail.log", "alembic")


def quiet_library_logs() -> None:
    """Keep the demo console to drip's own lines (and any library's real problems)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class LiveDemo:
    """The web app, scheduler and mail catcher of the live demo, bound and ready.

    `run()` serves until interrupted (or `close()` from another thread).
    """

    def __init__(self, config_path: Path, folder: Path, host: str = "127.0.0.1", port: int = 8000):
        quiet_library_logs()
        config = load_config(config_path)
        folder.mkdir(parents=True, exist_ok=True)
        database = folder / "live.db"
        for leftover in folder.glob("live.db*"):
            leftover.unlink()
        self.engine = db.make_engine(f"sqlite:///{database.resolve()}")
        db.ensure_schema(self.engine)
        self.clock = DemoClock(lambda: datetime.now(UTC))
        self.catcher = MailCatcher(self.clock).start()
        smtp_url = self.catcher.smtp_url
        self.services = Services(
            config=config,
            engine=self.engine,
            secret=DEMO_SECRET,
            transport_factory=lambda: SMTPTransport.from_url(smtp_url),
            clock=self.clock,
            options=WebOptions(
                confirm_interval=timedelta(minutes=1), mail_limits=MailLimits(per_mailbox=100)
            ),
            actor="demo",
        )
        self.app = create_app(services=self.services)
        pages.install(self.app, self.catcher, self.clock)
        self.server: Any = make_server(self.app, host, port)
        link_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self.url = f"http://{link_host}:{self.server.effective_port}"
        # the links in every email must come back to this server, not the clinic's site
        # and a newsletter goes out the day after tomorrow, 10:00 (see /newsletters)
        self.services.config = demo_newsletters(
            replace(
                config, clinic=replace(config.clinic, base_url=self.url, newsletter_archive=True)
            ),
            datetime.now(UTC),
        )
        self.scheduler: Any = None

    def run(self, scheduler: bool = True) -> None:
        if scheduler:
            self.scheduler = start_scheduler(self.services)
        self.services.worker.start()
        try:
            self.server.run()
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        self.services.worker.stop()
        self.server.close()
        self.catcher.stop()
        self.engine.dispose()
