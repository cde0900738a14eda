"""Where `drip send`'s CPU per email goes, stage by stage (issue 8).

    python bench/bench_stages.py [--subscribers 4000] [--profile build|parent] [--build-only]

1. build: what a sending child does per email to build it (Jinja render + MIME
   compose, no DKIM), timed in this process on the seeded fixture's first step
   (the quickest of several rounds: the least disturbed by other work).
2. run: the real `drip send` against Postfix's `smtp-sink` (4 connections), with
   the CPU of the parent (plan, claim, record on SQLite) and of its sending
   children (which build and send) read from the kernel separately; the sending
   part is the children's total less the build stage's.
CPU time, not wall time: it is what a 2-core machine runs out of. Nothing here
is a pass/fail test.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_bulk import warm
from bench_send import NOW, seed, start_sink

from drip import db
from drip.config import load_config
from drip.sender import Sender
from drip.tokens import Tokens, links

# runs `drip send` and reports the parent's and the (joined) children's CPU apart
_WRAPPER = """
import atexit, json, resource, sys
def report():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"self": me.ru_utime + me.ru_stime,
                      "children": kids.ru_utime + kids.ru_stime}), file=sys.stderr)
atexit.register(report)
sys.argv = ["drip", "send", "--now", sys.argv[1]]
from drip.cli import main
main()
"""


def build_stage(env: dict[str, str], count: int, profile: bool) -> float:
    """ms of CPU per message built (render + compose), as a sending child does it."""
    config = load_config(env["DRIP_CONFIG"])
    engine = db.make_engine(env["DRIP_DATABASE_URL"])
    sender = Sender(
        config, engine, None, Tokens(env["DRIP_SECRET_KEY"]), clock=lambda: NOW, dry_run=True
    )
    campaign = config.campaigns[0]
    step = campaign.steps[0]
    work = [
        (
            f"p{i}@example.org",
            f"{i:032x}",
            "Pat" if i % 2 else None,
            frozenset({"night_cramps"}),
            campaign.key,
            step.key,
            os.urandom(16).hex(),
            links(sender.tokens, config.clinic.base_url, f"{i:032x}"),  # made by the parent
        )
        for i in range(count)
    ]
    sender._envelope(work[0])  # compile the templates first: once per run, not per email
    profiler = cProfile.Profile() if profile else None
    rounds = []  # the machine is shared: the quickest round of 250 is the least disturbed
    if profiler:
        profiler.enable()
    for start in range(0, count, 250):
        began = time.process_time()
        for values in work[start : start + 250]:
            sender._envelope(values)
        rounds.append((time.process_time() - began) / len(work[start : start + 250]))
    if profiler:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    engine.dispose()
    return 1000 * min(rounds)


def run_stage(env: dict[str, str], port: int, profile: bool) -> dict[str, float]:
    """CPU seconds of the parent and of both children in one real `drip send`."""
    url = f"smtp://127.0.0.1:{port}?starttls=off&connections=4"
    command = [sys.executable]
    if profile:  # the parent only: the children leave with os._exit
        command += ["-m", "cProfile", "-s", "tottime"]
        code = Path(tempfile.mkstemp(suffix=".py")[1])
        code.write_text(_WRAPPER)
        command += [str(code), NOW.isoformat()]
    else:
        command += ["-c", _WRAPPER, NOW.isoformat()]
    start = time.perf_counter()
    done = subprocess.run(
        command, env={**os.environ, **env, "DRIP_SMTP_URL": url}, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if profile:
        print("\n".join(done.stdout.splitlines()[:45]), file=sys.stderr)
    usage = json.loads(done.stderr.strip().splitlines()[-1])
    return {"seconds": seconds, **usage, "summary": done.stdout.strip().splitlines()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=4000)
    parser.add_argument("--profile", choices=["build", "parent"])
    parser.add_argument("--build-only", action="store_true", help="time the build stage alone")
    args = parser.parse_args()
    count = args.subscribers
    with tempfile.TemporaryDirectory() as tmp:
        env = seed(Path(tmp), count)
        build_ms = build_stage(env, min(count, 2000), args.profile == "build")
        if args.profile == "build" or args.build_only:
            print(json.dumps({"build_ms_per_email": round(build_ms, 3)}))
            return
        warm(env)
        sink, port, _ = start_sink()
        try:
            usage = run_stage(env, port, args.profile == "parent")
        finally:
            sink.terminate()
    total = usage["self"] + usage["children"]
    print(
        json.dumps(
            {
                "emails": count,
                "build_ms_per_email": round(build_ms, 3),
                "parent_ms_per_email": round(1000 * usage["self"] / count, 3),
                "children_ms_per_email": round(1000 * usage["children"] / count, 3),
                "sending_ms_per_email (children - build)": round(
                    1000 * usage["children"] / count - build_ms, 3
                ),
                "total_ms_per_email": round(1000 * total / count, 3),
                "emails_per_second": round(count / usage["seconds"]),
                "summary": usage["summary"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
