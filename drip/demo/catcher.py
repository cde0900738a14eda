"""The demo's local mail catcher: a real SMTP server on 127.0.0.1 (aiosmtpd).

`drip demo` points drip's real SMTP transport at it, so every email takes the
same path as in production; demo/pages.py shows each one in the browser as the
patient would see it. aiosmtpd comes with the `demo` extra, not with drip itself.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Caught:
    number: int
    at: datetime  # on the demo clock
    recipient: str
    data: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "(no subject)")

    def part(self, kind: str) -> str:
        body = self.message.get_body(preferencelist=(kind,))
        return str(body.get_content()) if body is not None else ""


class _Handler:
    def __init__(self, catcher: MailCatcher):
        self.catcher = catcher

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            self.catcher.add(rcpt, envelope.content)
        return "250 2.0.0 Caught by the drip demo"


class MailCatcher:
    def __init__(self, clock: Callable[[], datetime]):
        self.clock = clock
        self._messages: list[Caught] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def add(self, recipient: str, data: bytes) -> None:
        with self._lock:
            self._messages.append(Caught(len(self._messages) + 1, self.clock(), recipient, data))

    @property
    def messages(self) -> list[Caught]:
        with self._lock:
            return list(self._messages)

    def start(self, host: str = "127.0.0.1") -> MailCatcher:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        self._controller = Controller(_Handler(self), hostname=host, port=port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def smtp_url(self) -> str:
        assert self._controller is not None
        c = self._controller
        return f"smtp://{c.hostname}:{c.port}?starttls=off&timeout=10"
