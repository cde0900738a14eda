"""The bulk pipeline against a raw blast, ratios measured in one run (issue 8).

    python bench/bench_bulk.py [--subscribers 10000] [--connections 4]
                               [--relay-subscribers 10000] [--relay-connections 32]
                               [--rounds 3]

Two setups, each timing the real `drip send` command (a subprocess, SQLite, real
SMTP) against a raw sender in the same run, in rounds: raw, drip, raw, drip, ...,
raw, each drip run's ratio against the mean of the raw runs around it, and the
median round's ratio reported (every round's too): the same number of prebuilt drip
messages pushed over the same number of smtplib connections, one thread each,
i.e. what the wire allows with no database, no rendering and no bookkeeping
(smtplib's sendmail: one command per round trip). Also reported: the same raw
sender with MAIL, RCPT and DATA pipelined (RFC 2920), as drip itself sends when
the server offers it.
  1. local: Postfix's C `smtp-sink` (the machine is the only limit);
  2. relay: bench/slow_relay.py, which answers each message after 50 ms, as a
     remote relay does (throughput is then about connections / latency).
Also reported: drip's CPU time per email (user + system, from the kernel) and its
peak memory. Nothing here is a pass/fail test; compare the ratios.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_send import FIXTURE, NOW, ROOT, free_port, launch, seed, start_sink

from drip.config import load_config
from drip.outgoing import build
from drip.render import Renderer
from drip.tokens import Tokens


def sample_message() -> bytes:
    """One real drip email (the fixture's first step), as drip puts it on the wire."""
    config = load_config(FIXTURE / "campaigns.toml")
    campaign = config.campaigns[0]
    return build(
        config,
        Renderer(config.templates_dir),
        Tokens("bench-secret-0123456789"),
        email="p1@example.org",
        public_id="0" * 32,
        first_name="Pat",
        symptoms={"night_cramps"},
        campaign=campaign,
        step=campaign.steps[0],
        ref="0" * 32,
        date=datetime.now(UTC),
    ).envelope.data


def over_connections(
    count: int, connections: int, worker: Callable[[smtplib.SMTP, int, int], None], port: int
) -> float:
    """Seconds for `connections` threads, one smtplib connection each, to run `worker`
    (connection, how many, first recipient number) over `count` messages in all."""
    per = [count // connections + (i < count % connections) for i in range(connections)]

    def run(n: int, offset: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as conn:
            worker(conn, n, offset)

    threads = [threading.Thread(target=run, args=(n, sum(per[:i]))) for i, n in enumerate(per)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def raw_blast(port: int, count: int, connections: int, message: bytes) -> float:
    """Seconds to push `count` prebuilt messages over `connections` smtplib connections."""

    def worker(conn: smtplib.SMTP, n: int, offset: int) -> None:
        for i in range(n):
            conn.sendmail("care@clinic.test", [f"p{offset + i}@example.org"], message)

    return over_connections(count, connections, worker, port)


def raw_pipelined(port: int, count: int, connections: int, message: bytes) -> float:
    """The same with MAIL, RCPT and DATA in one write (RFC 2920), as drip sends when the
    server offers PIPELINING: what the wire allows once round trips are halved."""
    data = message.replace(b"\r\n.", b"\r\n..") + b".\r\n"

    def worker(conn: smtplib.SMTP, n: int, offset: int) -> None:
        conn.ehlo()
        if not conn.has_extn("pipelining"):
            raise SystemExit("the server does not offer PIPELINING")
        for i in range(n):
            conn.send(
                f"MAIL FROM:<care@clinic.test>\r\nRCPT TO:<p{offset + i}@example.org>\r\n"
                "DATA\r\n".encode()
            )
            replies = [conn.getreply()[0] for _ in range(3)]
            if replies != [250, 250, 354]:
                raise SystemExit(f"unexpected replies {replies}")
            conn.send(data)
            if conn.getreply()[0] != 250:
                raise SystemExit("message refused")

    return over_connections(count, connections, worker, port)


def drip_send(env: dict[str, str], url: str) -> dict[str, Any]:
    env = {**os.environ, **env, "DRIP_SMTP_URL": url}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed drip has its bytecode
    done = launch([sys.executable, "-m", "drip", "send", "--now", NOW.isoformat()], env)
    if done["exit_code"]:
        raise SystemExit(f"drip send failed: {done['output']}")
    return {**done, "summary": str(done["output"]).strip().splitlines()[-1]}


def warm(env: dict[str, str]) -> None:
    """The pre-flight check's verdict, as an earlier cron run leaves it: a clinic's
    big send runs on a database that has been sending, not on a fresh one."""
    from drip import db
    from drip.preflight import preflight

    config = load_config(env["DRIP_CONFIG"])
    engine = db.make_engine(env["DRIP_DATABASE_URL"])
    assert preflight(config, engine, Renderer(config.templates_dir)) == []
    engine.dispose()


def measure(
    port: int, count: int, connections: int, message: bytes, rounds: int
) -> dict[str, object]:
    """`rounds` drip runs, each between two raw blasts (their mean is that run's base):
    raw, drip, raw, drip, ..., raw. The machine's speed drifts within minutes, so
    bracketing each drip run in time cancels a steady drift, and the median of the
    rounds' ratios is the figure (each round's ratio is reported too). Every drip run
    starts from the same copy of the seeded database."""
    url = f"smtp://127.0.0.1:{port}?starttls=off&connections={connections}"
    with tempfile.TemporaryDirectory() as tmp:
        env = seed(Path(tmp), count)
        warm(env)
        database = Path(tmp) / "drip.db"
        shutil.copy(database, Path(tmp) / "seeded.db")
        raws = [raw_blast(port, count, connections, message)]
        drips: list[dict[str, Any]] = []
        for _ in range(rounds):
            fresh(database, Path(tmp) / "seeded.db")
            drips.append(drip_send(env, url))
            raws.append(raw_blast(port, count, connections, message))
    piped = raw_pipelined(port, count, connections, message)
    seconds = [float(d["seconds"]) for d in drips]
    ratios = [(raws[i] + raws[i + 1]) / 2 / seconds[i] for i in range(rounds)]
    middle = sorted(range(rounds), key=lambda i: ratios[i])[rounds // 2]  # the median round
    raw = (raws[middle] + raws[middle + 1]) / 2
    return {
        "emails": count,
        "connections": connections,
        "rounds": rounds,
        "ratio_drip_to_raw": round(ratios[middle], 2),
        "ratios_each_round": [round(r, 2) for r in ratios],
        "drip_seconds": round(seconds[middle], 2),
        "drip_emails_per_second": round(count / seconds[middle]),
        "raw_seconds": round(raw, 2),
        "raw_emails_per_second": round(count / raw),
        "raw_emails_per_second_each": [round(count / r) for r in raws],
        "raw_pipelined_emails_per_second": round(count / piped),
        "ratio_drip_to_raw_pipelined": round(piped / seconds[middle], 2),
        "drip_cpu_ms_per_email": round(
            statistics.median(1000 * float(d["cpu_seconds"]) / count for d in drips), 3
        ),
        "drip_cpu_ms_per_email_each": [
            round(1000 * float(d["cpu_seconds"]) / count, 3) for d in drips
        ],
        "drip_peak_rss_mb": round(max(float(d["rss_mb"]) for d in drips), 1),
        "drip_summary": drips[middle]["summary"],
    }


def fresh(database: Path, seeded: Path) -> None:
    """The database as seeded: no WAL, no quiet verdict (drip/quiet.py) from a run before."""
    for leftover in ("-wal", "-shm", "-quiet"):
        database.with_name(database.name + leftover).unlink(missing_ok=True)
    shutil.copy(seeded, database)


def run(args: argparse.Namespace) -> dict[str, object]:
    message = sample_message()
    results: dict[str, object] = {"message_bytes": len(message)}
    sink, port, kind = start_sink()
    try:
        results["local"] = {
            "server": kind,
            **measure(port, args.subscribers, args.connections, message, args.rounds),
        }
    finally:
        sink.terminate()
    if args.relay_subscribers <= 0:  # the local setup alone (e.g. to read its CPU per email)
        return results
    relay_port = free_port()
    relay = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "slow_relay.py"), str(relay_port), str(args.latency)]
    )
    try:
        time.sleep(1.0)
        results["relay"] = {
            "latency_ms": args.latency * 1000,
            **measure(
                relay_port,
                args.relay_subscribers,
                args.relay_connections,
                message,
                args.rounds,
            ),
        }
    finally:
        relay.terminate()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--relay-subscribers", type=int, default=10_000)
    parser.add_argument("--relay-connections", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3, help="drip runs per setup")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    compileall.compile_dir(ROOT / "drip", quiet=1)  # as installed: start-up reads bytecode
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
