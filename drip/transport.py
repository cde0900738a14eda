"""Where emails go: a real SMTP relay, or a folder (demo, previews).

A transport takes an Envelope and either returns (the server took it) or raises:
- TemporaryFailure: try again later (4xx, 421, a line dropped before the message
  content was sent, a timeout before it).
- PermanentFailure: 5xx. `bounce` is true only when the server said this
  recipient's mailbox does not exist (replies.names_the_mailbox); `refusal`
  identifies the reply so a run can spot a relay refusing everything.
- InDoubt: the line dropped or timed out after the whole message was sent and
  before the server answered. The server may have it; it must not be resent
  silently.
- TransportUnavailable: cannot talk to the server at all (connect, TLS, auth); the
  run stops instead of failing every message.

SMTPTransport is thread-safe: each sending thread gets its own connection, kept
open and reused, up to `connections` of them (DRIP_SMTP_URL `connections=N`).
Whoever creates a transport closes it (`with transport_from_settings(...) as t`).
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import parse_qs, unquote, urlparse

from .message import Envelope
from .replies import Refusal, Stage, Verdict, classify

MAX_CONNECTIONS = 64
DEFAULT_CONNECTIONS = 4


class DeliveryError(Exception):
    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class TemporaryFailure(DeliveryError):
    pass


class PermanentFailure(DeliveryError):
    def __init__(
        self,
        message: str,
        code: int | None = None,
        *,
        bounce: bool = False,
        refusal: Refusal | None = None,
    ):
        super().__init__(message, code)
        self.bounce = bounce
        self.refusal = refusal


class InDoubt(DeliveryError):
    pass


class TransportUnavailable(DeliveryError):
    pass


class Transport(Protocol):
    def send(self, envelope: Envelope) -> None: ...

    def close(self) -> None: ...


class _Closing:
    """`with transport:` closes it; shared by every transport."""

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Rate:
    """A relay's limit: `count` messages per `seconds`."""

    count: int
    seconds: int

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def __str__(self) -> str:
        unit = {1: "s", 60: "m", 3600: "h"}[self.seconds]
        return f"{self.count}/{unit}"

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*([smh])\s*", text)
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"rate={text!r}: write it as N/s, N/m or N/h, e.g. rate=10/s")
        return cls(int(match.group(1)), {"s": 1, "m": 60, "h": 3600}[match.group(2)])


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
    connections: int = DEFAULT_CONNECTIONS
    rate: Rate | None = None

    @classmethod
    def from_url(cls, url: str) -> SMTPSettings:
        """smtp://user:pass@host:587?starttls=required&timeout=30&connections=8&rate=50/s."""
        parts = urlparse(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"DRIP_SMTP_URL must start with smtp:// or smtps://, not {url!r}")
        if not parts.hostname:
            raise ValueError("DRIP_SMTP_URL has no host name")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        known = {"starttls", "timeout", "verify", "connections", "rate"}
        unknown = sorted(set(query) - known)
        if unknown:
            raise ValueError(
                f"DRIP_SMTP_URL: unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        implicit = parts.scheme == "smtps"
        starttls = "off" if implicit else query.get("starttls", "auto")
        if starttls not in ("auto", "required", "off"):
            raise ValueError("starttls= must be auto, required or off")
        try:
            connections = int(query.get("connections", DEFAULT_CONNECTIONS))
            timeout = float(query.get("timeout", 30))
        except ValueError:
            raise ValueError("connections= and timeout= must be numbers") from None
        if not 1 <= connections <= MAX_CONNECTIONS:
            raise ValueError(f"connections= must be between 1 and {MAX_CONNECTIONS}")
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 25),
            implicit_tls=implicit,
            starttls=starttls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=timeout,
            verify=query.get("verify", "yes") != "no",
            connections=connections,
            rate=Rate.parse(query["rate"]) if "rate" in query else None,
        )


def tls_context(settings: SMTPSettings) -> ssl.SSLContext:
    """Made once per transport: loading the system's CA certificates takes ~50 ms."""
    context = ssl.create_default_context()
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SharedTLS:
    """`tls_context(settings)`, made on the first call and shared by every session
    after it (an SSLContext is thread-safe); callable from any thread."""

    def __init__(self, settings: SMTPSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None

    def __call__(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = tls_context(self.settings)
            return self._context


def open_session(s: SMTPSettings, context: Callable[[], ssl.SSLContext]) -> smtplib.SMTP:
    """A ready SMTP session: connected, EHLO, STARTTLS as configured, logged in
    (raises TransportUnavailable)."""
    try:
        if s.implicit_tls:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout, context=context()
            )
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        conn.ehlo()
        if s.starttls != "off" and not s.implicit_tls:
            if conn.has_extn("starttls"):
                conn.starttls(context=context())
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
        raise TransportUnavailable(f"cannot reach SMTP server {s.host}:{s.port}: {exc}") from None
    return conn


class SMTPConnection:
    """One SMTP session, reused for many messages; reconnects when the server hung up."""

    def __init__(self, settings: SMTPSettings, context: Callable[[], ssl.SSLContext] | None = None):
        self.settings = settings
        self._context = context or (lambda: tls_context(settings))
        self._conn: smtplib.SMTP | None = None
        self.opened = 0  # sessions opened, for tests and the benchmark

    def _connect(self) -> smtplib.SMTP:
        conn = open_session(self.settings, self._context)
        self.opened += 1
        return conn

    def send(self, envelope: Envelope) -> None:
        if self._conn is None:
            self._conn = self._connect()
        try:
            self._transaction(self._conn, envelope)
        except _StaleConnection:
            # the server hung up while we were idle, before MAIL FROM was answered:
            # nothing was sent, so one fresh connection and one more try is safe
            self._drop()
            self._conn = self._connect()
            try:
                self._transaction(self._conn, envelope)
            except _StaleConnection as exc:
                self._drop()
                raise TemporaryFailure(f"connection dropped: {exc}") from None

    def _transaction(self, conn: smtplib.SMTP, envelope: Envelope) -> None:
        options = smtp_options(envelope, bool(conn.has_extn("smtputf8")))
        if conn.has_extn("pipelining"):
            self._pipelined(conn, envelope, options)
            return
        try:
            code, resp = conn.mail(envelope.sender, options)
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _StaleConnection(str(exc) or type(exc).__name__) from None
        try:
            self._expect(code, resp, Stage.MAIL, (250,))
            code, resp = conn.rcpt(envelope.recipient)
            self._expect(code, resp, Stage.RCPT, (250, 251))
            conn.putcmd("data")
            code, resp = conn.getreply()
            self._expect(code, resp, Stage.DATA, (354,))
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise lost_before_content(exc) from None
        self._content(conn, envelope)

    def _pipelined(self, conn: smtplib.SMTP, envelope: Envelope, options: list[str]) -> None:
        """MAIL, RCPT and DATA in one write, then their three replies (RFC 2920): two
        round trips a message instead of four, and a fraction of the CPU."""
        try:
            conn.send(commands(envelope, options))
            replies = [conn.getreply()]
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _StaleConnection(str(exc) or type(exc).__name__) from None
        refused = refusal_at(0, replies[0])
        try:
            while len(replies) < len(PIPELINE) and replies[-1][0] != 421:  # 421: it hangs up
                replies.append(conn.getreply())
                refused = refused or refusal_at(len(replies) - 1, replies[-1])
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            if refused is None:
                raise lost_before_content(exc) from None
        if refused is None:
            self._content(conn, envelope)
            return
        if len(replies) == len(PIPELINE) and replies[-1][0] == 354:
            # a server that accepted DATA after refusing MAIL or RCPT: end the empty
            # message (it has no recipient) so the session stays in step
            try:
                conn.send(b".\r\n")
                conn.getreply()
            except (smtplib.SMTPServerDisconnected, OSError):
                self._drop()
        stage, ok, (code, resp) = refused
        self._expect(code, resp, stage, ok)

    def _content(self, conn: smtplib.SMTP, envelope: Envelope) -> None:
        """The message after a 354, and the server's verdict on it."""
        try:
            conn.send(dot_stuffed(envelope.data))
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # the message content was not (completely) sent: the server cannot have it
            self._drop()
            raise lost_before_content(exc) from None
        try:
            code, resp = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise in_doubt(exc) from None
        self._expect(code, resp, Stage.END_OF_DATA, (250,))

    def _expect(self, code: int, resp: bytes, stage: Stage, ok: tuple[int, ...]) -> None:
        if code in ok:
            return
        if code == 421:
            self._drop()  # the server is closing this session
        elif stage is not Stage.END_OF_DATA:
            self._reset()
        raise refused(stage, code, resp)

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(smtplib.SMTPException, OSError):
            self._conn.quit()
        self._drop()


def refused(stage: Stage, code: int, resp: bytes) -> DeliveryError:
    """What a refusing reply at `stage` means for the message (replies.classify)."""
    text = resp.decode("utf-8", "replace")
    message = f"{stage} refused: {code} {text}"
    verdict = classify(stage, code, text)
    if verdict is Verdict.DEFERRED:
        return TemporaryFailure(message, code)
    return PermanentFailure(
        message,
        code,
        bounce=verdict is Verdict.BOUNCED,
        refusal=Refusal.of(str(stage), code, text),
    )


# what each pipelined command must get back
PIPELINE = ((Stage.MAIL, (250,)), (Stage.RCPT, (250, 251)), (Stage.DATA, (354,)))


def refusal_at(
    index: int, reply: tuple[int, bytes]
) -> tuple[Stage, tuple[int, ...], tuple[int, bytes]] | None:
    """The pipelined command `index`'s reply, if it is not what that command needs."""
    stage, ok = PIPELINE[index]
    return None if reply[0] in ok else (stage, ok, reply)


_OFF_THE_LINE = re.compile("[\r\n<>]")


def commands(envelope: Envelope, options: list[str]) -> bytes:
    """MAIL FROM, RCPT TO and DATA as one pipelined write."""
    for address in (envelope.sender, envelope.recipient):
        if _OFF_THE_LINE.search(address):  # never a second command on the line
            raise ValueError(f"address {address!r} cannot go on an SMTP command line")
    extra = "".join(" " + option for option in options)
    text = f"MAIL FROM:<{envelope.sender}>{extra}\r\nRCPT TO:<{envelope.recipient}>\r\nDATA\r\n"
    return text.encode("utf-8" if options else "ascii")


def lost_before_content(exc: BaseException) -> TemporaryFailure:
    return TemporaryFailure(
        f"connection lost before the message was sent: {exc or type(exc).__name__}"
    )


def in_doubt(exc: BaseException) -> InDoubt:
    return InDoubt(
        "connection lost after the message was sent, before the server answered "
        f"({exc or type(exc).__name__}); the server may have it"
    )


def smtp_options(envelope: Envelope, smtputf8: bool) -> list[str]:
    """MAIL FROM's options: SMTPUTF8 for an address that is not plain ASCII (raises
    needs SMTPUTF8 when the relay does not offer it)."""
    if not envelope.needs_smtputf8:
        return []
    if not smtputf8:
        raise PermanentFailure(
            "needs SMTPUTF8: the address is not plain ASCII and the relay does not offer SMTPUTF8"
        )
    return ["SMTPUTF8", "BODY=8BITMIME"]


def dot_stuffed(data: bytes) -> bytes:
    """The DATA payload (RFC 5321 4.5.2): lines starting with "." get one more, then
    the terminating line. `data` already has CRLF line ends (message.build_message)."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class _StaleConnection(Exception):
    pass


class SMTPTransport(_Closing):
    """SMTP for many threads at once: one kept-open connection per sending thread."""

    def __init__(self, settings: SMTPSettings):
        self.settings = settings
        self._local = threading.local()
        self._sessions: list[SMTPConnection] = []
        self._lock = threading.Lock()
        self._tls = SharedTLS(settings)  # one context for every connection

    @classmethod
    def from_url(cls, url: str) -> SMTPTransport:
        return cls(SMTPSettings.from_url(url))

    @property
    def connections(self) -> int:
        return self.settings.connections

    @property
    def rate(self) -> Rate | None:
        return self.settings.rate

    @property
    def sessions_opened(self) -> int:
        with self._lock:
            return sum(s.opened for s in self._sessions)

    def send(self, envelope: Envelope) -> None:
        session: SMTPConnection | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = SMTPConnection(self.settings, self._tls)
            with self._lock:
                self._sessions.append(session)
        session.send(envelope)

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()


class OutboxTransport(_Closing):
    """Writes each message as an .eml file into a folder, numbered in send order."""

    connections = 1
    rate = None

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._count: int | None = None  # files already there, counted at the first send

    def send(self, envelope: Envelope) -> None:
        with self._lock:
            if self._count is None:  # not on cron's idle run: the folder only grows
                self._count = sum(1 for _ in self.folder.glob("*.eml"))
            self._count += 1
            safe_to = "".join(c if c.isalnum() else "_" for c in envelope.recipient)[:60]
            (self.folder / f"{self._count:06d}-{safe_to}.eml").write_bytes(envelope.data)

    def close(self) -> None:
        pass


def transport_from_settings(smtp_url: str | None, outbox_dir: Path | None) -> Transport:
    if smtp_url and outbox_dir:
        raise TransportUnavailable(
            "both DRIP_SMTP_URL and DRIP_OUTBOX are set: unset one (DRIP_OUTBOX writes .eml "
            "files instead of sending)"
        )
    if smtp_url:
        return SMTPTransport.from_url(smtp_url)
    if outbox_dir:
        return OutboxTransport(outbox_dir)
    raise TransportUnavailable(
        "no mail transport configured: set DRIP_SMTP_URL (e.g. smtp://user:pass@relay:587) "
        "or DRIP_OUTBOX=folder to write .eml files instead"
    )


def connections_of(transport: Transport | None) -> int:
    """How many messages a transport can have in flight at once."""
    return max(1, int(getattr(transport, "connections", 1)))


def rate_of(transport: Transport | None) -> Rate | None:
    rate = getattr(transport, "rate", None)
    return rate if isinstance(rate, Rate) else None
