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


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    config: Config
    engine: Engine
    secret: str
    transport_factory: Callable[[], Transport]
    clock: Callable[[], datetime] = utc_now
    options: WebOptions = field(default_factory=WebOptions)
    actor: str = "web"
    # DKIM (drip/dkim.py): applied to every email the web side sends
    sign: Callable[[bytes], bytes] | None = None

    def __post_init__(self) -> None:
        self.tokens = Tokens(self.secret)
        self.renderer = Renderer(self.config.templates_dir)

    def now(self) -> datetime:
        return self.clock()

    def transport(self) -> Transport:
        """A fresh transport per use: SMTP connections are not shared across threads."""
        return self.transport_factory()
