"""What the web side needs from the engine, built once per app and shared by requests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from ..config import Config
from ..render import Renderer
from ..tokens import Tokens
from ..transport import Transport
from .options import WebOptions
from .worker import MailWorker


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    config: Config
    engine: Engine
    secret: str = field(repr=False)
    transport_factory: Callable[[], Transport]
    clock: Callable[[], datetime] = utc_now
    options: WebOptions = field(default_factory=WebOptions)
    actor: str = "web"
    # DKIM (drip/dkim.py): applied to every email the web side sends
    sign: Callable[[bytes], bytes] | None = None
    # keys that signed links already sent (DRIP_OLD_SECRET_KEYS): verify only
    old_secrets: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        self.tokens = Tokens(self.secret, self.old_secrets, clock=self.clock)
        # started by `drip serve`/`drip run`; tests drive it with run_once()
        self.worker = MailWorker(self, self.options.mail_poll_seconds)
        self.renderer = Renderer(self.config.templates_dir)

    def now(self) -> datetime:
        return self.clock()

    def transport(self) -> Transport:
        """A fresh transport per use: SMTP connections are not shared across threads."""
        return self.transport_factory()
