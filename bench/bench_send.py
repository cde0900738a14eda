"""How fast is `drip send`, and where does the time go? Ratios measured in one run.

    python bench/bench_send.py [--subscribers 10000]

It seeds N confirmed subscribers whose first email is due, then times the real
`drip send` command (a subprocess, SQLite file, real SMTP) against:
  - Postfix's C `smtp-sink` when installed (apt-get install postfix; only the
    /usr/sbin/smtp-sink binary is used), else the Python aiosmtpd sink;
  - a baseline in the same run: the same number of prebuilt messages pushed
    through one smtplib connection, i.e. the SMTP floor no sender can beat.
Then it times a second `drip send` with nothing due, and reports peak memory of
both runs, plus the same for N/5 subscribers to show memory stays flat.
Nothing here is a pass/fail test: timings on a shared 2-core machine are noisy,
so compare the ratios printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from drip import db
from drip.config import load_config
from drip.enrollment import FINGERPRINT_KEY
from drip.models import Enrollment, Meta, Subscriber, Symptom

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "basic"
NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)  # Monday 10:00 in the fixture's Chicago


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sink() -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    if shutil.which("smtp-sink") or Path("/usr/sbin/smtp-sink").exists():
        binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        proc = subprocess.Popen(
            [binary, *user, "-c", f"127.0.0.1:{port}", "256"], stdout=subprocess.DEVNULL
        )
        kind = "postfix smtp-sink"
    else:
        code = (
            "import sys,time; sys.path.insert(0, 'tests'); from mailsink import MailSink;"
            "from aiosmtpd.controller import Controller;"
            "s = MailSink(); s.controller = Controller(s.handler, hostname='127.0.0.1',"
            f" port={port}); s.start(); time.sleep(10**6)"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
        kind = "aiosmtpd (install postfix for the C smtp-sink)"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port, kind
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the SMTP sink did not start")


def seed(folder: Path, count: int) -> dict[str, str]:
    shutil.copy(FIXTURE / "campaigns.toml", folder / "campaigns.toml")
    shutil.copytree(FIXTURE / "templates", folder / "templates")
    url = f"sqlite:///{folder / 'drip.db'}"
    engine = db.make_engine(url)
    db.ensure_schema(engine)
    with Session(engine) as session:  # bulk insert: seeding is not what we measure
        session.execute(
            insert(Subscriber),
            [
                dict(
                    id=i,
                    public_id=f"{i:032x}",
                    email=f"p{i}@example.org",
                    timezone="UTC",
                    status="active",
                    created_at=NOW,
                    confirmed_at=NOW,
                    source="bench",
                    soft_bounces=0,
                )
                for i in range(1, count + 1)
            ],
        )
        session.execute(
            insert(Symptom),
            [dict(subscriber_id=i, key="night_cramps") for i in range(1, count + 1)],
        )
        session.execute(
            insert(Enrollment),
            [
                dict(
                    subscriber_id=i,
                    campaign_key="leg-health",
                    started_at=NOW,
                    state="active",
                    next_step_key="welcome",
                    next_due_at=NOW,
                )
                for i in range(1, count + 1)
            ],
        )
        # the schedule is current, as after any earlier run (a config edit would
        # trigger one re-plan of every subscriber; measured separately below)
        session.add(
            Meta(
                key=FINGERPRINT_KEY,
                value=load_config(folder / "campaigns.toml").schedule_fingerprint(),
            )
        )
        session.commit()
    engine.dispose()
    return {
        "DRIP_CONFIG": str(folder / "campaigns.toml"),
        "DRIP_DATABASE_URL": url,
        "DRIP_SECRET_KEY": "bench-secret-0123456789",
    }


# Peak memory is read from the kernel when a process ends (wait4's ru_maxrss), but
# Linux counts what a forked child held before it ran the new program: a child
# forked from this process, grown by seeding tens of thousands of subscribers,
# "peaked" at this process's size (157 MB at 50,000, where drip's own processes
# held 57 MB). So `drip` is started from a small launcher, itself started while
# this process is small (on import).
_LAUNCHER_CODE = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    start = time.perf_counter()
    proc = subprocess.Popen(job["argv"], env=job["env"], stdout=subprocess.PIPE, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    print(json.dumps({
        "seconds": time.perf_counter() - start,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "exit_code": os.waitstatus_to_exitcode(status),
        "output": output,
    }), flush=True)
"""
_launcher = subprocess.Popen(
    [sys.executable, "-c", _LAUNCHER_CODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
)


def launch(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run `argv` to its end from the small launcher: wall and CPU seconds, peak RSS
    in MB (of it and the children it waited for), exit code and standard output."""
    assert _launcher.stdin is not None and _launcher.stdout is not None
    _launcher.stdin.write(json.dumps({"argv": argv, "env": env}) + "\n")
    _launcher.stdin.flush()
    return dict(json.loads(_launcher.stdout.readline()))


def timed_send(env: dict[str, str], port: int) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB, and the summary line of one `drip send`."""
    env = {**os.environ, **env, "DRIP_SMTP_URL": f"smtp://127.0.0.1:{port}?starttls=off"}
    done = launch([sys.executable, "-m", "drip", "send", "--now", NOW.isoformat()], env)
    output = str(done["output"])
    if done["exit_code"]:
        raise SystemExit(f"drip send failed: {output}")
    return float(done["seconds"]), float(done["rss_mb"]), output.strip().splitlines()[-1]


def smtp_floor(port: int, count: int, sample: bytes) -> float:
    """Seconds to push `count` prebuilt messages over one reused smtplib connection."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for i in range(count):
            conn.sendmail("care@clinic.test", [f"p{i}@example.org"], sample)
    return time.perf_counter() - start


def python_startup() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "drip", "--version"], check=True, capture_output=True)
    return time.perf_counter() - start


def run(count: int) -> dict[str, float | str]:
    sink, port, kind = start_sink()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = seed(Path(tmp), count)
            busy_s, busy_mb, busy_line = timed_send(env, port)
            idle_s, _, idle_line = timed_send(env, port)
            # a marketer edits a delay: the next run re-plans every active subscriber
            config = Path(env["DRIP_CONFIG"])
            config.write_text(config.read_text().replace('delay = "2d"', 'delay = "3d"'))
            replan_s, _, _ = timed_send(env, port)
        with tempfile.TemporaryDirectory() as tmp:
            small = max(count // 5, 1)
            small_s, small_mb, _ = timed_send(seed(Path(tmp), small), port)
        sample = (FIXTURE / "templates" / "emails" / "welcome.mjml").read_bytes() * 20
        floor_s = smtp_floor(port, count, b"Subject: x\r\n\r\n" + sample)
    finally:
        sink.terminate()
    startup = python_startup()
    return {
        "sink": kind,
        "subscribers": count,
        "send_seconds": round(busy_s, 2),
        "send_summary": busy_line,
        "emails_per_second": round(count / busy_s),
        "idle_send_seconds": round(idle_s, 3),
        "idle_summary": idle_line,
        "replan_after_edit_seconds": round(replan_s, 2),
        "process_startup_seconds": round(startup, 3),
        "smtp_floor_seconds": round(floor_s, 2),
        "ratio_send_to_smtp_floor": round(busy_s / floor_s, 2),
        "peak_rss_mb": round(busy_mb, 1),
        "peak_rss_mb_at_one_fifth": round(small_mb, 1),
        "seconds_at_one_fifth": round(small_s, 2),
        "ratio_time_5x_subscribers": round(busy_s / small_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.subscribers)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
