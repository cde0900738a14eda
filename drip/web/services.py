"""What the web side needs from the engine, built once per app and shared by requests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from ..config import Config
from ..live import LiveConfig
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
    # told the new Config when an edit of campaigns.toml is taken up (see watch)
    listeners: list[Callable[[Config], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tokens = Tokens(self.secret, self.old_secrets, clock=self.clock)
        # started by `drip serve`/`drip run`; tests drive it with run_once()
        self.worker = MailWorker(self, self.options.mail_poll_seconds)
        self.renderer = Renderer(self.config.templates_dir)
        self.live: LiveConfig | None = None

    def watch(self, every: float = 5.0) -> None:
        """Take up edits of campaigns.toml and templates that pass the check (drip run/serve)."""
        self.live = LiveConfig(self.config, self.engine, every=every, on_change=self._switch)

    def refresh_config(self, force: bool = False) -> bool:
        """Look for an edit now (at most every few seconds unless `force`); True if switched."""
        return self.live.refresh(force) if self.live is not None else False

    def _switch(self, config: Config, renderer: Renderer) -> None:
        # requests read services.config afresh, so assigning is enough
        self.config, self.renderer = config, renderer
        for listener in self.listeners:
            listener(config)

    def now(self) -> datetime:
        return self.clock()

    def transport(self) -> Transport:
        """A fresh transport per use: SMTP connections are not shared across threads."""
        return self.transport_factory()
