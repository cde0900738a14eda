"""What an SMTP reply means for one message. Pure logic: the table in the README.

| where                                   | reply / event             | meaning            |
| --------------------------------------- | ------------------------- | ------------------ |
| connect, TLS, AUTH                      | refused or unreachable    | stop the run       |
| any command                             | 421                       | deferred (retried) |
| MAIL, RCPT, DATA, end of data           | other 4xx                 | deferred (retried) |
| RCPT                                    | 5xx naming the mailbox    | bounced            |
| MAIL, RCPT, DATA, end of data           | any other 5xx             | refused            |
| before the message content was sent     | connection lost, timeout  | deferred (retried) |
| after the content, before the reply     | connection lost, timeout  | in doubt           |

"Naming the mailbox" means the enhanced status code 5.1.x (bad address) or
5.2.1 (mailbox disabled), or, for servers that send no enhanced code, words
that say the mailbox does not exist. Everything else at 5xx (5.7.x policy,
"relaying denied", a content filter) is the sender's problem: the email fails
but the patient keeps their place, and a run of identical refusals stops the
run so a misconfigured relay can never bounce or suppress a whole list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    MAIL = "MAIL FROM"
    RCPT = "RCPT TO"
    DATA = "DATA"
    END_OF_DATA = "end of data"


class Verdict(StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"  # temporary: retried with backoff
    BOUNCED = "bounced"  # the mailbox does not exist: fail, suppress the address
    REFUSED = "refused"  # any other permanent refusal: fail, keep the patient


_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_MAILBOX_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address)|"
    r"mailbox (unknown|not found|does not exist)|recipient (unknown|not found)|"
    r"unknown (recipient|mailbox)|does not exist|invalid (recipient|mailbox)|"
    r"address unknown|no mailbox",
    re.I,
)
_ADDRESSES = re.compile(r"<[^>]*>|\S+@\S+")


def enhanced_code(text: str) -> str | None:
    """The RFC 3463 enhanced status code a reply starts with, if any ("5.1.1")."""
    match = _ENHANCED.match(text)
    return ".".join(match.groups()) if match else None


def names_the_mailbox(text: str) -> bool:
    """Does a 5xx reply say this recipient's mailbox does not exist?"""
    code = enhanced_code(text)
    if code is not None:
        return code.startswith("5.1.") or code == "5.2.1"
    return bool(_MAILBOX_WORDS.search(text))


def classify(stage: Stage, code: int, text: str) -> Verdict:
    """The meaning of one SMTP reply at one stage of a transaction."""
    if stage is Stage.END_OF_DATA and code == 250:
        return Verdict.SENT
    if 400 <= code < 500:
        return Verdict.DEFERRED
    if stage is Stage.RCPT and 500 <= code < 600 and names_the_mailbox(text):
        return Verdict.BOUNCED
    if 500 <= code < 600:
        return Verdict.REFUSED
    # a reply outside the protocol (e.g. 354 to RCPT): treat as temporary
    return Verdict.DEFERRED


@dataclass(frozen=True)
class Refusal:
    """The identity of a refusal, so that "the same answer again and again" is
    recognisable even when each reply quotes a different address."""

    stage: str
    code: int
    text: str

    @classmethod
    def of(cls, stage: str, code: int, text: str) -> Refusal:
        return cls(stage, code, " ".join(_ADDRESSES.sub("<>", text).split()).lower()[:200])
