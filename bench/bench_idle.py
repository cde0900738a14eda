"""What cron pays every few minutes: `drip send` with nothing due, and `drip --help`.

    python bench/bench_idle.py [--subscribers 10000] [--runs 7] [--source] [--instructions]

Seeds SUBSCRIBERS through drip's own code (bench_scale.py's seed: every one got
the welcome and waits days for the next step), runs `drip send` once (it
migrates and stores the pre-flight verdict), then times, each in a fresh
process, the median of RUNS:
  - `drip send` with nothing due (issue 10: <= 0.5 s of drip's own CPU, <= 1 s wall),
    cron's usual case: the run before left its verdict "nothing before T" and
    nothing changed since (drip/quiet.py), so no database layer is loaded;
  - the same with that verdict removed before each run: the full path, as the
    first run after any write to the database (a signup, an unsubscribe) takes;
  - `drip send` without DRIP_SECRET_KEY (the one-line settings error);
  - `drip --help`;
  - a bare `python -c pass`: the interpreter's own start-up, taken off the CPU
    times to give drip's own work;
  - importing SQLAlchemy, its ORM and its SQLite dialect alone: most of the full path.
CPU is user + system time of the child process (wait4). By default bytecode is
cached, as for an installed drip (in a temporary PYTHONPYCACHEPREFIX, warmed by
the first run); `--source` measures with no bytecode for drip itself (as with
PYTHONDONTWRITEBYTECODE=1 in a checkout). Nothing here passes or fails: the
machine may be shared, so the load average is printed with the numbers, and
`--instructions` also counts the instructions of one run of each under valgrind
(cachegrind), a measure that other work on the machine does not change.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import NOW, ROOT, run_child  # imports no drip

SQLALCHEMY = "import sqlalchemy.orm, sqlalchemy.dialects.sqlite"
VALGRIND = ("valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null")


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds, medians of the runs
    cpu: float
    rss_mb: float  # the largest peak of the runs
    instructions: int | None = None  # of one run, counted by valgrind

    def own(self, bare: Timing) -> float:
        return max(self.cpu - bare.cpu, 0.0)


def timed(
    args: list[str],
    env: dict[str, str],
    runs: int,
    expect: int = 0,
    before: Callable[[], None] | None = None,
) -> Timing:
    """Median wall and CPU of `runs` fresh processes running `args` (each after `before`)."""
    walls, cpus, peaks = [], [], []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - start)
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
        code = os.waitstatus_to_exitcode(status)
        if code != expect:
            raise SystemExit(f"{' '.join(args[1:])}: exit {code}, expected {expect}\n{err}")
        cpus.append(usage.ru_utime + usage.ru_stime)
        peaks.append(usage.ru_maxrss / 1024)
    return Timing(statistics.median(walls), statistics.median(cpus), max(peaks))


def counted(report: str) -> list[int]:
    """Each process's instructions in valgrind's report (its standard error), in the
    order the processes started (valgrind names each by its process id; a forked
    child's id is above its parent's)."""
    found = re.findall(r"==(\d+)==\s+I\s+refs:\s+([\d,]+)", report)
    return [int(n.replace(",", "")) for _, n in sorted(found, key=lambda f: int(f[0]))]


def instructions(args: list[str], env: dict[str, str]) -> int:
    """Instructions one run of `args` executes (user space), counted by cachegrind."""
    done = subprocess.run(
        [*VALGRIND, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    found = counted(done.stderr)
    if not found:
        raise SystemExit(f"valgrind gave no count for {' '.join(args[1:])}:\n{done.stderr}")
    return found[0]


def measure(
    folder: Path, runs: int, source: bool = False, count: bool = False
) -> dict[str, Timing]:
    """The idle path's timings for the project in `folder` (campaigns.toml, drip.db)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DRIP_CONFIG": str(folder / "campaigns.toml"),
        "DRIP_DATABASE_URL": f"sqlite:///{folder / 'drip.db'}",
        "DRIP_SECRET_KEY": "bench-secret-0123456789",
        "DRIP_OUTBOX": str(folder / "outbox"),
    }
    if source:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:  # an installed drip has its bytecode: cached here, written by the first run
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    python = sys.executable
    send = [python, "-m", "drip", "send", "--now", (NOW + timedelta(hours=1)).isoformat()]
    no_key = {k: v for k, v in env.items() if k != "DRIP_SECRET_KEY"}
    timed(send, env, 1)  # migrations, the pre-flight check, bytecode
    timed([python, "-m", "drip", "--help"], env, 1)
    verdict = folder / "drip.db-quiet"  # the last run's "nothing before T" (drip/quiet.py)

    def forget() -> None:
        verdict.unlink(missing_ok=True)

    commands = {
        "bare": ([python, "-c", "pass"], env, 0, None),
        "sqlalchemy": ([python, "-c", SQLALCHEMY], env, 0, None),
        "send": (send, env, 0, None),
        "send_full": (send, env, 0, forget),
        "no_key": (send, no_key, 1, None),
        "help": ([python, "-m", "drip", "--help"], env, 0, None),
    }
    timings = {}
    for name, (args, environ, expect, before) in commands.items():
        timing = timed(args, environ, runs, expect, before)
        if count:
            if before is not None:
                before()
            timing = replace(timing, instructions=instructions(args, environ))
        timings[name] = timing
    return timings


def report(timings: dict[str, Timing]) -> list[str]:
    bare = timings["bare"]
    names = {
        "sqlalchemy": "import sqlalchemy.orm alone",
        "send": "drip send, nothing due (the last run's verdict holds)",
        "send_full": "drip send, nothing due, first run after a write (full path)",
        "no_key": "drip send, no DRIP_SECRET_KEY",
        "help": "drip --help",
    }
    lines = [f"python -c pass: {bare.wall:.2f} s wall, {bare.cpu:.2f} s CPU{_counted(bare)}"]
    for key, name in names.items():
        t = timings[key]
        lines.append(
            f"{name}: {t.wall:.2f} s wall, {t.cpu:.2f} s CPU, less python's start-up "
            f"{t.own(bare):.2f} s CPU, peak {t.rss_mb:.0f} MB{_counted(t, bare)}"
        )
    return lines


def _counted(t: Timing, bare: Timing | None = None) -> str:
    if t.instructions is None:
        return ""
    text = f"; {t.instructions / 1e6:,.0f} M instructions"
    if bare is not None and bare.instructions is not None:
        text += f" ({(t.instructions - bare.instructions) / 1e6:,.0f} M beyond python's)"
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--source", action="store_true", help="No bytecode for drip.")
    parser.add_argument(
        "--instructions", action="store_true", help="Also count instructions (valgrind)."
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="drip-bench-idle-"))
    try:
        run_child("seed", folder, str(args.subscribers), "0")  # nobody due now
        before = os.getloadavg()[0]
        timings = measure(folder, args.runs, source=args.source, count=args.instructions)
        after = os.getloadavg()[0]
        kind = "no bytecode for drip" if args.source else "bytecode cached"
        print(
            f"{args.subscribers:,} subscribers, nothing due; median of {args.runs} runs, "
            f"{kind}; load average {before:.1f} before, {after:.1f} after"
        )
        for line in report(timings):
            print(f"  {line}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
