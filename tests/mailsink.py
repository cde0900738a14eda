"""A real SMTP server on 127.0.0.1 for tests (aiosmtpd), with failure modes.

Modes, globally or per recipient address:
  accept         250 for everything (the default)
  tempfail       451 at RCPT TO (a 4xx the sender should retry)
  reject         550 5.1.1 at RCPT TO (a hard bounce)
  policy         550 5.7.1 at DATA (the sender's problem, not the patient's)
  drop           hang up in the middle of DATA, before any reply
  slow           wait `delay` seconds before the 250 after DATA
"""

from __future__ import annotations

import asyncio
import email
import socket
import threading
import time
from dataclasses import dataclass
from email.message import Message

from aiosmtpd.controller import Controller


@dataclass
class Received:
    sender: str
    recipient: str
    data: bytes

    @property
    def message(self) -> Message:
        return email.message_from_bytes(self.data)

    @property
    def subject(self) -> str:
        return str(email.header.make_header(email.header.decode_header(self.message["Subject"])))

    def header(self, name: str) -> str:
        return self.message.get(name, "")


class SinkHandler:
    def __init__(self) -> None:
        self.mode = "accept"
        self.by_recipient: dict[str, str] = {}
        self.delay = 0.0
        self.received: list[Received] = []
        self.connections = 0
        self.tls_sessions = 0  # messages received over an encrypted session
        self._lock = threading.Lock()

    def _mode(self, address: str) -> str:
        return self.by_recipient.get(address, self.mode)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self._lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        mode = self._mode(address)
        if mode == "tempfail":
            return "451 4.3.0 Mailbox busy, try again later"
        if mode == "reject":
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        mode = self._mode(envelope.rcpt_tos[0])
        if mode == "policy":
            return "550 5.7.1 Message rejected by policy"
        if mode == "drop":
            server.transport.close()
            return "421 closing"
        if mode == "slow" or self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            # STARTTLS sets session.ssl; implicit TLS (smtps) only shows on the transport
            encrypted = session.ssl or server.transport.get_extra_info("ssl_object")
            self.tls_sessions += encrypted is not None
            for rcpt in envelope.rcpt_tos:
                self.received.append(Received(envelope.mail_from, rcpt, envelope.content))
        return "250 2.0.0 Message accepted for delivery"

    def to(self, address: str) -> list[Received]:
        with self._lock:
            return [m for m in self.received if m.recipient == address]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} messages, got {len(self.received)}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MailSink:
    """Start with `start()`, read `.url` for DRIP_SMTP_URL, stop with `stop()`."""

    def __init__(self, **controller_options: object) -> None:
        """`controller_options` go to aiosmtpd (authenticator, tls_context, ...)."""
        self.handler = SinkHandler()
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=free_port(),
            data_size_limit=10_000_000,
            **controller_options,
        )

    def start(self) -> MailSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=off&timeout=10"

    @property
    def received(self) -> list[Received]:
        return self.handler.received
