"""Where emails go: a real SMTP server, or a folder (demo, previews).

A transport takes an Envelope and either returns (the server said 250) or raises:
- TemporaryFailure: try again later (4xx, dropped line, timeout). The message was
  not accepted, because SMTP accepts only on the 250 after DATA.
- PermanentFailure: 5xx. `recipient` is true when the server refused this
  recipient (a hard bounce), false for sender or content rejections.
- TransportUnavailable: cannot talk to the server at all (connect, TLS, auth); the
  run stops instead of failing every message.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlparse

from .message import Envelope


class DeliveryError(Exception):
    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class TemporaryFailure(DeliveryError):
    pass


class PermanentFailure(DeliveryError):
    def __init__(self, message: str, code: int | None = None, recipient: bool = False):
        super().__init__(message, code)
        self.recipient = recipient

    @property
    def is_policy(self) -> bool:
        """5.7.x: authentication or policy; the sender's problem, not the patient's."""
        return " 5.7." in f" {self}"


class TransportUnavailable(DeliveryError):
    pass


class Transport(Protocol):
    def send(self, envelope: Envelope) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SMTPSettings:
    host: str
    port: int
    implicit_tls: bool
    starttls: str  # "auto" (if offered), "required", "off"
    username: str | None
    password: str | None = field(repr=False)  # never in logs or tracebacks
    timeout: float = 30.0
    verify: bool = True

    @classmethod
    def from_url(cls, url: str) -> SMTPSettings:
        """smtp://user:pass@host:587?starttls=required&timeout=30, smtps://host:465."""
        parts = urlparse(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"DRIP_SMTP_URL must start with smtp:// or smtps://, not {url!r}")
        if not parts.hostname:
            raise ValueError("DRIP_SMTP_URL has no host name")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        starttls = "off" if implicit else query.get("starttls", "auto")
        if starttls not in ("auto", "required", "off"):
            raise ValueError("starttls= must be auto, required or off")
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 25),
            implicit_tls=implicit,
            starttls=starttls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=float(query.get("timeout", 30)),
            verify=query.get("verify", "yes") != "no",
        )


class SMTPTransport:
    """One reused SMTP connection; reconnects when the server has hung up."""

    def __init__(self, settings: SMTPSettings):
        self.settings = settings
        self._conn: smtplib.SMTP | None = None

    @classmethod
    def from_url(cls, url: str) -> SMTPTransport:
        return cls(SMTPSettings.from_url(url))

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        if not s.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            if s.implicit_tls:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=context
                )
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            conn.ehlo()
            if s.starttls != "off" and not s.implicit_tls:
                if conn.has_extn("starttls"):
                    conn.starttls(context=context)
                    conn.ehlo()
                elif s.starttls == "required":
                    conn.close()
                    raise TransportUnavailable(f"{s.host} does not offer STARTTLS")
            if s.username:
                conn.login(s.username, s.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportUnavailable(
                f"SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportUnavailable(
                f"cannot reach SMTP server {s.host}:{s.port}: {exc}"
            ) from None
        return conn

    def send(self, envelope: Envelope) -> None:
        if self._conn is None:
            self._conn = self._connect()
        try:
            self._transaction(envelope)
        except _StaleConnection:
            # the server hung up while we were idle, before MAIL FROM was accepted:
            # nothing was sent, so one fresh connection and one more try is safe
            self.close()
            self._conn = self._connect()
            try:
                self._transaction(envelope)
            except _StaleConnection as exc:
                raise TemporaryFailure(f"connection dropped: {exc}") from None

    def _transaction(self, envelope: Envelope) -> None:
        conn = self._conn
        assert conn is not None
        try:
            code, resp = conn.mail(envelope.sender)
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _StaleConnection(str(exc)) from None
        except TimeoutError as exc:
            self._drop()
            raise TemporaryFailure(f"timeout at MAIL FROM: {exc}") from None
        try:
            if code != 250:
                self._fail(code, resp, "MAIL FROM", recipient=False)
            code, resp = conn.rcpt(envelope.recipient)
            if code not in (250, 251):
                self._fail(code, resp, "RCPT TO", recipient=True)
            code, resp = conn.data(envelope.data)
            if code != 250:
                self._fail(code, resp, "DATA", recipient=False)
        except (smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError) as exc:
            self._drop()
            raise TemporaryFailure(
                f"connection lost before the server accepted the "
                f"message: {exc or type(exc).__name__}"
            ) from None

    def _fail(self, code: int, resp: bytes, stage: str, recipient: bool) -> None:
        text = resp.decode("utf-8", "replace")
        self._reset()
        message = f"{stage} refused: {code} {text}"
        if 400 <= code < 500:
            raise TemporaryFailure(message, code)
        raise PermanentFailure(message, code, recipient=recipient)

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(smtplib.SMTPException, OSError):
            self._conn.quit()
        self._drop()


class _StaleConnection(Exception):
    pass


class OutboxTransport:
    """Writes each message as an .eml file into a folder, numbered in send order."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._count = sum(1 for _ in self.folder.glob("*.eml"))

    def send(self, envelope: Envelope) -> None:
        with self._lock:
            self._count += 1
            safe_to = "".join(c if c.isalnum() else "_" for c in envelope.recipient)[:60]
            (self.folder / f"{self._count:06d}-{safe_to}.eml").write_bytes(envelope.data)

    def close(self) -> None:
        pass


class MemoryTransport:
    """Keeps messages in a list: for dry runs and previews (tests use real SMTP)."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    def send(self, envelope: Envelope) -> None:
        self.sent.append(envelope)

    def close(self) -> None:
        pass


def transport_from_settings(smtp_url: str | None, outbox_dir: Path | None) -> Transport:
    if smtp_url:
        return SMTPTransport.from_url(smtp_url)
    if outbox_dir:
        return OutboxTransport(outbox_dir)
    raise TransportUnavailable(
        "no mail transport configured: set DRIP_SMTP_URL (e.g. smtp://user:pass@relay:587) "
        "or DRIP_OUTBOX=folder to write .eml files instead"
    )
