"""Does drip's work grow with what is due, or with the list? Ratios in one run (issue 10).

    python bench/bench_scale.py [--due 10000] [--big 1000000] [--replan 100000]
                                [--skip-big] [--keep DIR]

Seeds SQLite databases through drip's own code: subscribers and their answers
are bulk-inserted rows, and drip's re-plan (drip/replan.py) enrolls them, as
after any campaigns.toml edit. Then, each in a fresh process (peak memory is
that process's own):
  1. due-finding + planning: DUE subscribers due now among DUE, and the same
     DUE due among BIG (the rest already got their first email and wait for the
     next); the time from the first due query to the last planned job;
  2. re-plan after an edit (a delay changed) at REPLAN and at BIG subscribers;
  3. `drip send` with nothing due: wall time and the process's own CPU time,
     next to a bare `python -c pass` (medians, measured by bench_idle.py).
Nothing here is a pass/fail test: the machine may be shared, so compare ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# drip is imported in the child processes only: Linux carries a parent's peak memory
# over into its children, so this process stays small for their numbers to be theirs

FIXTURE = ROOT / "tests" / "fixtures" / "basic"
NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)  # a Monday: 10:00 in Chicago, in the window
STARTED = NOW - timedelta(days=1)
# zones whose Monday 9:00 is before NOW, so every due welcome is due now
ZONES = ("America/Chicago", "America/New_York", "Europe/London", "UTC")
CHUNK = 20_000


def seed(folder: Path, total: int, due: int, url: str | None = None) -> dict[str, float]:
    """`total` subscribers; the first `due` are due now, the rest got their welcome."""
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from drip import db, enrollment
    from drip.config import load_config
    from drip.models import Delivery, Subscriber, Symptom

    shutil.copy(FIXTURE / "campaigns.toml", folder / "campaigns.toml")
    shutil.copytree(FIXTURE / "templates", folder / "templates")
    engine = db.make_engine(url or f"sqlite:///{folder / 'drip.db'}")
    db.ensure_schema(engine)
    config = load_config(folder / "campaigns.toml")
    with Session(engine) as session:
        for first in range(1, total + 1, CHUNK):
            ids = range(first, min(first + CHUNK, total + 1))
            session.execute(
                insert(Subscriber),
                [
                    dict(
                        id=i,
                        public_id=f"{i:032x}",
                        email=f"p{i}@example.org",
                        timezone=ZONES[i % len(ZONES)],
                        status="active",
                        created_at=STARTED,
                        confirmed_at=STARTED,
                        source="bench",
                        soft_bounces=0,
                    )
                    for i in ids
                ],
            )
            session.execute(
                insert(Symptom), [dict(subscriber_id=i, key="night_cramps") for i in ids]
            )
            waiting = [i for i in ids if i > due]
            if waiting:
                session.execute(
                    insert(Delivery),
                    [
                        dict(
                            subscriber_id=i,
                            campaign_key="leg-health",
                            step_key="welcome",
                            status="sent",
                            ref=f"{i:032x}",
                            attempts=1,
                            created_at=STARTED,
                            updated_at=STARTED,
                            sent_at=STARTED,
                        )
                        for i in waiting
                    ],
                )
        start = time.perf_counter()
        enrollment.replan_if_changed(session, config, STARTED)  # enrolls everyone
        session.commit()
        seconds = time.perf_counter() - start
    engine.dispose()
    return {"seconds": seconds}


# -- measurements, each in its own process ------------------------------------------------


def child_plan(folder: Path) -> dict[str, float]:
    """Due-finding + planning: the Sender's plan stage, nothing built or sent."""
    from sqlalchemy.orm import Session

    from drip import db
    from drip.config import load_config
    from drip.sender import Sender
    from drip.tokens import Tokens

    config = load_config(folder / "campaigns.toml")
    engine = db.make_engine(f"sqlite:///{folder / 'drip.db'}")
    sender = Sender(config, engine, None, Tokens("b" * 32), clock=lambda: NOW, dry_run=True)
    with Session(engine, expire_on_commit=False) as session:
        sender.session, sender._commit = session, session.flush
        start = time.perf_counter()
        jobs = sum(len(batch) for batch in sender._planned(session, None))
        seconds = time.perf_counter() - start
        session.rollback()
    return {"seconds": seconds, "jobs": jobs}


def child_replan(folder: Path) -> dict[str, float]:
    """Re-plan after an edit: the second step's delay changes from 2d to 3d."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from drip import db, enrollment
    from drip.config import load_config

    toml = folder / "campaigns.toml"
    toml.write_text(toml.read_text().replace('delay = "2d"', 'delay = "3d"', 1))
    config = load_config(toml)
    engine = db.make_engine(f"sqlite:///{folder / 'drip.db'}")
    with Session(engine) as session:
        start = time.perf_counter()
        count = enrollment.replan_if_changed(session, config, NOW)
        session.commit()
        seconds = time.perf_counter() - start
        due = session.execute(
            text("SELECT count(*) FROM enrollments WHERE next_due_at > :t"),
            {"t": (NOW + timedelta(days=1, hours=12)).strftime("%Y-%m-%d %H:%M:%S")},
        ).scalar()
    return {"seconds": seconds, "subscribers": count, "moved_later": due}


def run_child(kind: str, folder: Path, *extra: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(folder), *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def idle_send(folder: Path) -> dict[str, float]:
    """`drip send` with nothing due (after one run that did the work): bench_idle.py's runs."""
    from bench_idle import measure

    timings = measure(folder, runs=5)
    send, bare = timings["send"], timings["bare"]
    return {
        "wall": send.wall,
        "cpu": send.cpu,
        "rss_mb": send.rss_mb,
        "bare_wall": bare.wall,
        "bare_cpu": bare.cpu,
        "help_wall": timings["help"].wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--replan", type=int, default=100_000)
    parser.add_argument("--skip-big", action="store_true", help="Only the small cases.")
    parser.add_argument("--keep", type=Path, help="Seed here and keep the databases.")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, folder, *extra = args.child
        if kind == "seed":
            result = seed(Path(folder), int(extra[0]), int(extra[1]))
        else:
            result = (child_plan if kind == "plan" else child_replan)(Path(folder))
        result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    base = args.keep or Path(tempfile.mkdtemp(prefix="drip-bench-scale-"))
    sizes = {"small": args.due, "replan": args.replan}
    if not args.skip_big:
        sizes["big"] = args.big
    folders = {}
    for name, total in sizes.items():
        folder = base / name
        if not (folder / "drip.db").exists():
            folder.mkdir(parents=True, exist_ok=True)
            r = run_child("seed", folder, str(total), str(args.due))
            print(
                f"seeded {name}: {total:,} subscribers ({args.due:,} due); drip's re-plan "
                f"enrolled them in {r['seconds']:.1f} s, peak {r['rss_mb']:.0f} MB"
            )
        folders[name] = folder

    plans = {name: run_child("plan", folders[name]) for name in ("small", "big") if name in folders}
    for name, r in plans.items():
        print(
            f"due-finding + planning, {args.due:,} due among {sizes[name]:,}: "
            f"{r['seconds']:.2f} s ({r['jobs']:,} planned), peak {r['rss_mb']:.0f} MB"
        )
    if "big" in plans:
        print(f"  ratio big/small: {plans['big']['seconds'] / plans['small']['seconds']:.2f}x")
    for name in ("replan", "big"):
        if name in folders:
            r = run_child("replan", folders[name])
            print(
                f"re-plan after an edit, {sizes[name]:,} subscribers: {r['seconds']:.1f} s "
                f"({r['moved_later']:,} moved later), peak {r['rss_mb']:.0f} MB"
            )
    idle = idle_send(folders["small"])
    print(
        f"drip send, nothing due: {idle['wall']:.2f} s wall, {idle['cpu']:.2f} s CPU "
        f"(bare python: {idle['bare_wall']:.2f} s wall, {idle['bare_cpu']:.2f} s CPU; "
        f"drip's own: {idle['cpu'] - idle['bare_cpu']:.2f} s CPU), peak {idle['rss_mb']:.0f} MB; "
        f"drip --help: {idle['help_wall']:.2f} s wall"
    )
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
