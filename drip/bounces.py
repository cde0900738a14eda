"""Returned mail -> Reports: RFC 3464 bounces, RFC 5965 complaints, other formats.

Sources: an mbox file, a Maildir folder (the mailbox module) or an IMAP folder
(imaplib). Each message is parsed the same way:

- multipart/report; report-type=feedback-report (ARF, RFC 5965): a complaint
  when Feedback-Type is abuse or fraud.
- multipart/report; report-type=delivery-status (DSN, RFC 3464): one Report per
  recipient block, from its Action and Status (5.7.x is told apart from 5.1.1,
  which flufl.bounce does not expose).
- anything else: flufl.bounce's detectors (Postfix, Exim, qmail, Exchange and
  other pre-DSN formats) find the failed recipients.

Matching: drip's ref from the VERP address the report was sent to
(bounce+REF@...), else from the X-Drip-Ref or Message-ID <REF@...> of the
returned message (full or headers only), else the recipient address.
"""

from __future__ import annotations

import email
import hashlib
import imaplib
import mailbox
import re
import ssl
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.policy import compat32
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from flufl.bounce import all_failures
from sqlalchemy.orm import Session

from .config import Config
from .feedback import COMPLAINT, IGNORED, Outcome, Report, apply, classify

REF = r"[0-9a-f]{32}"
VERP = re.compile(rf"\+({REF})@", re.I)
DRIP_REF = re.compile(rb"^X-Drip-Ref:[ \t]*(" + REF.encode() + rb")\s*$", re.I | re.M)
MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<(" + REF.encode() + rb")@", re.I | re.M)
STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
# where the envelope recipient (the VERP address) shows up in a delivered report
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
COMPLAINT_TYPES = ("abuse", "fraud")


class Malformed(ValueError):
    """A message that claims to be a report but cannot be read as one."""


class NotAReport(ValueError):
    """An ordinary message (an auto-reply, a person writing back)."""


def parse(raw: bytes) -> list[Report]:
    """The Reports in one returned message. Raises Malformed or NotAReport."""
    if not re.match(rb"^[!-9;-~]+:", raw.lstrip()[:200]):
        raise Malformed("not an email message (no header at the top)")
    msg = email.message_from_bytes(raw, policy=compat32)
    report_id = (msg.get("Message-ID") or "").strip() or "sha256:" + hashlib.sha256(
        raw
    ).hexdigest()[:24]
    refs = _refs(msg, raw)
    report_type = (
        (msg.get_param("report-type") or "")
        if msg.get_content_type() == ("multipart/report")
        else ""
    )
    report_type = str(report_type).lower()
    if report_type == "feedback-report":
        return [_arf(msg, report_id, refs)]
    if report_type == "delivery-status":
        return _dsn(msg, report_id, refs)
    return _other(msg, report_id, refs)


def _refs(msg: Message, raw: bytes) -> tuple[str, ...]:
    found: list[str] = []
    for name in ENVELOPE_HEADERS:
        for value in msg.get_all(name) or []:
            found += [m.lower() for m in VERP.findall(str(value))]
    # the returned message sits below the report's own headers
    text = raw.replace(b"\r\n", b"\n")
    body = text[text.find(b"\n\n") :] if b"\n\n" in text else b""
    for pattern in (DRIP_REF, MESSAGE_ID):
        found += [m.decode().lower() for m in pattern.findall(body)]
    return tuple(dict.fromkeys(found))  # in order, once each


def _parts(msg: Message, content_type: str) -> list[Message]:
    return [p for p in msg.walk() if p.get_content_type() == content_type]


def _fields(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str) and payload.strip():
        blocks = re.split(r"\r?\n\s*\r?\n", payload.strip())
        return [email.message_from_string(b, policy=compat32) for b in blocks]
    return []


def _address(value: str | None) -> str | None:
    """`rfc822; pat@example.org` (DSN) or a plain address -> the address."""
    if not value:
        return None
    _, _, address = str(value).rpartition(";")
    address = parseaddr(address.strip())[1] or address.strip().strip("<>")
    return address.lower() if "@" in address else None


def _dsn(msg: Message, report_id: str, refs: tuple[str, ...]) -> list[Report]:
    status_parts = _parts(msg, "message/delivery-status")
    if not status_parts:
        raise Malformed("a delivery report without its message/delivery-status part")
    reports = []
    for part in status_parts:
        blocks = _fields(part)
        for block in blocks[1:]:  # the first block is about the message, the rest per recipient
            action = str(block.get("Action", ""))
            recipient = _address(block.get("Original-Recipient")) or _address(
                block.get("Final-Recipient")
            )
            if not action and not recipient:
                continue
            if not action:
                raise Malformed(f"a recipient block for {recipient} without an Action field")
            status_field = str(block.get("Status", "")).strip()
            match = STATUS.match(status_field)
            if status_field and not match:
                raise Malformed(f"Status {status_field[:40]!r} is not a code like 5.1.1")
            detail = " ".join(str(block.get("Diagnostic-Code", "")).split())
            reports.append(
                Report(
                    kind=classify(action, match.group(1) if match else ""),
                    source="dsn",
                    report_id=report_id,
                    email=recipient,
                    refs=refs,
                    status=match.group(1) if match else "",
                    detail=detail[:300],
                )
            )
    if not reports:
        raise Malformed("a delivery report that names no recipient")
    return reports


def _arf(msg: Message, report_id: str, refs: tuple[str, ...]) -> Report:
    parts = _parts(msg, "message/feedback-report")
    blocks = _fields(parts[0]) if parts else []
    if not blocks:
        raise Malformed("a complaint report without its message/feedback-report part")
    fields = blocks[0]
    feedback = str(fields.get("Feedback-Type", "")).strip().lower()
    if not feedback:
        raise Malformed("a complaint report without a Feedback-Type field")
    recipient = _address(fields.get("Original-Rcpt-To"))
    if recipient is None:  # often redacted; the returned message may still say
        for part in _parts(msg, "message/rfc822") + _parts(msg, "text/rfc822-headers"):
            inner = part.get_payload(0) if part.is_multipart() else None
            if isinstance(inner, Message):
                recipient = _address(inner.get("To"))
    return Report(
        kind=COMPLAINT if feedback in COMPLAINT_TYPES else IGNORED,
        source="arf",
        report_id=report_id,
        email=recipient,
        refs=refs,
        detail=f"feedback-type {feedback}",
    )


def _other(msg: Message, report_id: str, refs: tuple[str, ...]) -> list[Report]:
    """Bounces in other formats, found by flufl.bounce's detectors."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception as exc:  # a detector choking on odd input: say so, go on
        raise Malformed(f"bounce detectors could not read it ({type(exc).__name__})") from None
    if not temporary and not permanent:
        raise NotAReport("not a bounce or complaint report")
    text = _text(msg)
    match = STATUS.search(text)
    status = match.group(1) if match and match.group(1)[0] in "45" else ""
    reports = []
    for addresses, action in ((permanent, "failed"), (temporary, "delayed")):
        for address in sorted(addresses):
            reports.append(
                Report(
                    kind=classify(action, status if action == "failed" else ""),
                    source="mail",
                    report_id=report_id,
                    email=address.decode("ascii", "replace").lower(),
                    refs=refs,
                    status=status if action == "failed" else "",
                    detail=" ".join(text.split())[:300],
                )
            )
    return reports


def _text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def process(
    session: Session, config: Config, raw: bytes, now: datetime, actor: str
) -> list[Outcome]:
    """Parse one returned message and apply every report in it (the caller commits)."""
    try:
        reports = parse(raw)
    except Malformed as exc:
        return [Outcome("malformed", f"skipped, malformed report: {exc}")]
    except NotAReport as exc:
        return [Outcome("skipped", f"skipped: {exc}")]
    return [apply(session, config, report, now, actor) for report in reports]


# -- sources ---------------------------------------------------------------------------


@dataclass
class Item:
    label: str  # where it came from, for the operator: file:key or imap uid
    raw: bytes
    uid: bytes | None = None  # IMAP only


class SourceError(Exception):
    """The mailbox cannot be opened or read; the message says why."""


def read_path(path: Path) -> Iterator[Item]:
    """Every message in an mbox file or a Maildir folder, read-only."""
    if path.is_dir():
        if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            raise SourceError(f"{path} is a folder but not a Maildir (no cur/, new/, tmp/)")
        box: mailbox.Mailbox = mailbox.Maildir(path, factory=None, create=False)
        kind = "maildir"
    elif path.is_file():
        with path.open("rb") as f:
            start = f.read(5)
        if start and start != b"From ":
            raise SourceError(f"{path} is not an mbox file (it must start with 'From ')")
        box = mailbox.mbox(path, factory=None, create=False)
        kind = "mbox"
    else:
        raise SourceError(f"{path}: no such file or folder")
    try:
        keys = sorted(box.keys(), key=str)
        for n, key in enumerate(keys, start=1):
            label = f"{path}:{n}" if kind == "mbox" else f"{path}/{key}"
            yield Item(label, box.get_bytes(key))
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None
    finally:
        box.close()


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    tls: str  # "implicit" (imaps), "starttls", "off"
    username: str
    password: str
    folder: str
    verify: bool

    @classmethod
    def from_url(cls, url: str, password: str | None = None) -> ImapSettings:
        """imaps://user:pass@host/Folder, imap://user@host:143/INBOX?starttls=off&verify=no."""
        parts = urlparse(url)
        if parts.scheme not in ("imap", "imaps"):
            raise SourceError(f"--imap must be an imap:// or imaps:// URL, not {url!r}")
        if not parts.hostname or not parts.username:
            raise SourceError("--imap URL needs a user and a host: imaps://user:pass@host/INBOX")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "imaps"
        tls = "implicit" if implicit else ("off" if query.get("starttls") == "off" else "starttls")
        secret = unquote(parts.password) if parts.password else password
        if not secret:
            raise SourceError("--imap URL has no password: put it in the URL or DRIP_IMAP_PASSWORD")
        return cls(
            host=parts.hostname,
            port=parts.port or (993 if implicit else 143),
            tls=tls,
            username=unquote(parts.username),
            password=secret,
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
            verify=query.get("verify", "yes") != "no",
        )


PROCESSED = "DripProcessed"  # IMAP keyword set on every message drip has handled


class ImapSource:
    """Messages not yet marked processed; `done(item)` marks one.

    Marks with the keyword DripProcessed where the server keeps custom keywords
    (PERMANENTFLAGS has \\*), else with \\Seen, so a rerun skips them.
    """

    def __init__(self, settings: ImapSettings, timeout: float = 60):
        self.settings = settings
        context = ssl.create_default_context()
        if not settings.verify:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            if settings.tls == "implicit":
                self.conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    settings.host, settings.port, ssl_context=context, timeout=timeout
                )
            else:
                self.conn = imaplib.IMAP4(settings.host, settings.port, timeout=timeout)
                if settings.tls == "starttls":
                    self.conn.starttls(ssl_context=context)
            self.conn.login(settings.username, settings.password)
            status, data = self.conn.select(_quote(settings.folder))
            if status != "OK":
                raise SourceError(f"IMAP folder {settings.folder!r}: {_said(data)}")
        except (OSError, imaplib.IMAP4.error) as exc:
            raise SourceError(
                f"IMAP {settings.host}:{settings.port}: {exc or type(exc).__name__}"
            ) from None
        flags = " ".join(_said(self.conn.untagged_responses.get("PERMANENTFLAGS", [])).split())
        self.flag = PROCESSED if "\\*" in flags else "\\Seen"

    def items(self) -> Iterator[Item]:
        criterion = f"UNKEYWORD {PROCESSED}" if self.flag == PROCESSED else "UNSEEN"
        try:
            status, data = self.conn.uid("SEARCH", criterion)
            if status != "OK":
                raise SourceError(f"IMAP search failed: {_said(data)}")
            for uid in (data[0] or b"").split():
                status, fetched = self.conn.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
                raw = next((p[1] for p in fetched if isinstance(p, tuple)), None)
                if status != "OK" or raw is None:
                    raise SourceError(f"IMAP fetch of message {uid.decode()} failed")
                yield Item(f"imap:{self.settings.folder}/{uid.decode()}", raw, uid)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise SourceError(f"IMAP: {exc or type(exc).__name__}") from None

    def done(self, item: Item) -> None:
        assert item.uid is not None
        try:
            self.conn.uid("STORE", item.uid.decode(), "+FLAGS", f"({self.flag})")
        except (OSError, imaplib.IMAP4.error) as exc:
            raise SourceError(f"IMAP: cannot mark message {item.uid.decode()}: {exc}") from None

    def close(self) -> None:
        with suppress(OSError, imaplib.IMAP4.error):
            self.conn.close()
            self.conn.logout()


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data: object) -> str:
    if isinstance(data, list):
        return " ".join(_said(d) for d in data)
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)
