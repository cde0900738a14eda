"""Instructions per email of `drip send`, counted by valgrind: a measure the machine's
drift does not move.

    python bench/bench_instructions.py [--small 500] [--large 2500] [--connections 4]

Runs the real `drip send` (SQLite, Postfix's smtp-sink or aiosmtpd on 127.0.0.1)
under valgrind's cachegrind twice, for SMALL and for LARGE subscribers whose
first email is due, and counts the user-space instructions of both of its
processes (the parent, and the sending child it forks). The difference between
the two runs, divided by LARGE - SMALL, is what one more email costs (in all, and
in each process: the parent plans and records, the child builds and sends); what is
left of the small run is the fixed cost (start-up, imports, templates). A forked
child's count starts from its parent's count at the fork, so the fixed cost
counts the parent's work before the fork twice; the cost per email does not.
Each run under valgrind takes about 40 times as long as without. Kernel work
(writes to SQLite's WAL, socket writes) is not counted: bench_bulk.py's CPU
times include it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_bulk import warm
from bench_idle import VALGRIND, counted
from bench_send import NOW, ROOT, seed, start_sink


def counted_send(count: int, port: int, connections: int) -> tuple[list[int], str]:
    """Each process's instructions for one `drip send` of `count` due emails."""
    with tempfile.TemporaryDirectory() as tmp:
        env = seed(Path(tmp), count)
        warm(env)  # bytecode and the pre-flight verdict, as in steady cron use
        env = {
            **os.environ,
            **env,
            "DRIP_SMTP_URL": f"smtp://127.0.0.1:{port}?starttls=off&connections={connections}",
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        done = subprocess.run(
            [*VALGRIND, sys.executable, "-m", "drip", "send", "--now", NOW.isoformat()],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    found = counted(done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"drip send under valgrind failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    return found, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=2500)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    if args.large <= args.small:
        parser.error("--large must be more than --small")
    sink, port, kind = start_sink()
    try:
        small, small_line = counted_send(args.small, port, args.connections)
        large, large_line = counted_send(args.large, port, args.connections)
    finally:
        sink.terminate()
    extra = args.large - args.small
    per_email = (sum(large) - sum(small)) / extra
    print(
        json.dumps(
            {
                "server": kind,
                "connections": args.connections,
                "runs": {str(args.small): small_line, str(args.large): large_line},
                "processes": len(large),
                "instructions_per_email": round(per_email),
                # the parent plans and records, the sending child builds and sends
                "instructions_per_email_by_process": dict(
                    zip(
                        ("parent", "sending_child"),
                        (round((b - a) / extra) for a, b in zip(small, large, strict=True)),
                        strict=False,
                    )
                ),
                "fixed_instructions_millions": round((sum(small) - per_email * args.small) / 1e6),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
