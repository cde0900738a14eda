"""A real SMTP server on 127.0.0.1 that answers from a script, for the fault table.

aiosmtpd (mailsink.py) cannot answer the DATA command itself with 4xx/5xx, hang
up after reading a whole message, or answer after the client's timeout; this
small asyncio server can. Each stage's answer comes from `script`, optionally
per recipient:

    server = ScriptedSMTP({"rcpt": "550 5.1.1 No such user"}).start()
    server.script_for["b@x.org"] = {"end": "hangup"}

Stages: "mail", "rcpt", "data" (the reply to the DATA command), "end" (the reply
after the message). An answer is a reply line ("451 4.3.0 Try later"),
"hangup" (close the connection without answering) or "sleep:SECONDS" followed
by a reply after a space ("sleep:3 250 OK"). Messages whose content the server
read completely are in `.received`, whatever it answered after.

Like a real server it offers PIPELINING (RFC 2920) unless `pipelining=False`,
answers RCPT and DATA with 503 after a refused MAIL and DATA with 554 when no
recipient was accepted, and counts in `.pipelined` the DATA commands that had
already arrived when it answered MAIL (the client sent them in one write).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from mailsink import free_port

OK = {
    "mail": "250 2.1.0 OK",
    "rcpt": "250 2.1.5 OK",
    "data": "354 End data with <CR><LF>.<CR><LF>",
    "end": "250 2.0.0 Queued",
}


@dataclass
class Got:
    sender: str
    recipient: str
    data: bytes


@dataclass
class ScriptedSMTP:
    script: dict[str, str] = field(default_factory=dict)
    smtputf8: bool = True
    pipelining: bool = True
    strict: bool = True  # False: DATA gets 354 even after MAIL or every RCPT was refused
    script_for: dict[str, dict[str, str]] = field(default_factory=dict)
    received: list[Got] = field(default_factory=list)
    answered: list[tuple[str, str]] = field(default_factory=list)  # (recipient, final reply)
    connections: int = 0
    pipelined: int = 0

    def __post_init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=off&timeout=2"

    def start(self) -> ScriptedSMTP:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._session, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    def _answer(self, stage: str, recipient: str) -> str:
        return self.script_for.get(recipient, {}).get(stage) or self.script.get(stage) or OK[stage]

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1

        async def reply(answer: str) -> bool:
            """Send an answer; False when the script hangs up instead."""
            if answer.startswith("sleep:"):
                seconds, _, answer = answer.removeprefix("sleep:").partition(" ")
                await asyncio.sleep(float(seconds))
            if answer == "hangup":
                writer.close()
                return False
            writer.write(answer.encode() + b"\r\n")
            await writer.drain()
            return True

        sender: str | None = ""
        recipient = ""
        try:
            await reply("220 scripted ESMTP")
            while line := await reader.readline():
                verb = line.decode("utf-8", "replace").strip()
                upper = verb.upper()
                if upper.startswith(("EHLO", "HELO")):
                    extensions = ["250-scripted", "250-8BITMIME"]
                    if self.smtputf8:
                        extensions.append("250-SMTPUTF8")
                    if self.pipelining:
                        extensions.append("250-PIPELINING")
                    writer.write(("\r\n".join([*extensions, "250 OK"]) + "\r\n").encode())
                elif upper.startswith("MAIL FROM:"):
                    sender = verb[10:].split()[0].strip("<>")
                    recipient = ""
                    if b"\nDATA\r\n" in bytes(reader._buffer):  # what already arrived
                        with self._lock:
                            self.pipelined += 1
                    answer = self._answer("mail", "")
                    accepted = _code(answer) == "250"
                    if not await reply(answer):
                        return
                    if not accepted:
                        sender = None
                elif upper.startswith("RCPT TO:"):
                    if sender is None:
                        await reply("503 5.5.1 Error: need MAIL command")
                        continue
                    answer = self._answer("rcpt", verb[8:].split()[0].strip("<>"))
                    if not await reply(answer):
                        return
                    if _code(answer) in ("250", "251"):
                        recipient = verb[8:].split()[0].strip("<>")
                elif upper == "DATA":
                    if (sender is None or not recipient) and self.strict:
                        await reply(
                            "503 5.5.1 Error: need MAIL command"
                            if sender is None
                            else "554 5.5.1 Error: no valid recipients"
                        )
                        continue
                    answer = self._answer("data", recipient)
                    if not await reply(answer):
                        return
                    if not answer.startswith("354"):
                        continue
                    lines = []
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        lines.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                    with self._lock:
                        self.received.append(Got(sender, recipient, b"".join(lines)))
                    final = self._answer("end", recipient)
                    with self._lock:
                        self.answered.append((recipient, final))
                    if not await reply(final):
                        return
                elif upper == "RSET":
                    await reply("250 OK")
                elif upper == "QUIT":
                    await reply("221 Bye")
                    return
                else:
                    await reply("250 OK")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def to(self, address: str) -> list[Got]:
        with self._lock:
            return [m for m in self.received if m.recipient == address]


def _code(answer: str) -> str:
    """The reply code a scripted answer sends ("" for a hang-up)."""
    if answer.startswith("sleep:"):
        answer = answer.partition(" ")[2]
    return answer[:3] if answer[:3].isdigit() else ""
