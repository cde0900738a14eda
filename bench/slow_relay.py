"""A lean SMTP relay on 127.0.0.1 that answers each message after a delay, like a
remote relay does (the network round trip plus its own queueing). Like real relays it
offers PIPELINING (RFC 2920).

    python bench/slow_relay.py PORT [LATENCY_SECONDS]

For benchmarks only: it accepts everything and keeps nothing.
"""

from __future__ import annotations

import asyncio
import sys


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float):
    writer.write(b"220 slow-relay ESMTP\r\n")
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(
                    b"250-slow-relay\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n"
                )
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                await reader.readuntil(b"\r\n.\r\n")
                await asyncio.sleep(latency)
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(port: int, latency: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: session(r, w, latency), "127.0.0.1", port, limit=4 * 1024 * 1024, backlog=256
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.05))
