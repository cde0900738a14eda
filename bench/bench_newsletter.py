"""How fast does one newsletter go to a big list? Emails per second, measured.

    python bench/bench_newsletter.py [--subscribers 20000] [--connections 4]

It seeds N confirmed subscribers through drip's own library code (the same
`subscribers.create` the CLI and the web form use), spread over four time zones,
adds a [[newsletter]] to the engine tests' campaigns.toml, and times the real
`drip send` command (a subprocess, SQLite file, real SMTP to Postfix's C
`smtp-sink`, or the Python aiosmtpd sink when Postfix is not installed) at a
moment when the newsletter is due in every zone. The subscribers are in no
series, so every email counted is the newsletter. A second run, with nothing
left to send, shows the cost of planning when a newsletter is done.
Timings on a shared machine are noisy; this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_send import FIXTURE, ROOT, start_sink

from drip import db, subscribers
from drip.config import load_config
from drip.enrollment import FINGERPRINT_KEY
from drip.models import Delivery, Meta

SIGNED_UP = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 2, 16, 0, tzinfo=UTC)  # after 10:00 in every zone below, in the window
ZONES = ("UTC", "Europe/London", "America/New_York", "America/Chicago")
NEWSLETTER = """
[[newsletter]]
key = "2026-06-bench"
name = "Bench newsletter"
subject = "News from the clinic"
preheader = "A few tips for this month"
template = "news"
send_at = "2026-06-02 10:00"
"""


def seed(folder: Path, count: int) -> dict[str, str]:
    shutil.copy(FIXTURE / "campaigns.toml", folder / "campaigns.toml")
    shutil.copytree(FIXTURE / "templates", folder / "templates")
    (folder / "templates" / "newsletters").mkdir()
    shutil.copy(
        ROOT / "tests" / "fixtures" / "newsletters" / "news.mjml",
        folder / "templates" / "newsletters" / "news.mjml",
    )
    with (folder / "campaigns.toml").open("a") as f:
        f.write(NEWSLETTER)
    config = load_config(folder / "campaigns.toml")
    url = f"sqlite:///{folder / 'drip.db'}"
    engine = db.make_engine(url)
    db.ensure_schema(engine)
    symptoms = list(config.symptoms)
    with Session(engine) as session:
        for i in range(count):
            subscribers.create(
                session,
                config,
                email=f"n{i}@example.org",
                symptoms=[symptoms[i % len(symptoms)]],
                now=SIGNED_UP,
                timezone=ZONES[i % len(ZONES)],
                confirmed=True,
                actor="bench",
            )
            if i % 1000 == 999:
                session.commit()
        # the schedule is current: no series re-plan in the timed run
        session.merge(Meta(key=FINGERPRINT_KEY, value=config.schedule_fingerprint()))
        session.commit()
    engine.dispose()
    return {
        "DRIP_CONFIG": str(folder / "campaigns.toml"),
        "DRIP_DATABASE_URL": url,
        "DRIP_SECRET_KEY": "bench-secret-0123456789",
    }


def timed_send(env: dict[str, str], url: str) -> tuple[float, str]:
    env = {**os.environ, **env, "DRIP_SMTP_URL": url, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "drip", "send", "--now", NOW.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("drip send:")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"drip send failed: {done.stdout}{done.stderr}")
    return seconds, lines[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    sink, port, kind = start_sink()
    try:
        with tempfile.TemporaryDirectory(prefix="drip-bench-news-") as tmp:
            started = time.perf_counter()
            env = seed(Path(tmp), args.subscribers)
            print(f"seeded {args.subscribers} subscribers in {time.perf_counter() - started:.1f} s")
            url = f"smtp://127.0.0.1:{port}?starttls=off&connections={args.connections}"
            seconds, line = timed_send(env, url)
            engine = db.make_engine(env["DRIP_DATABASE_URL"])
            with Session(engine) as session:
                sent = session.scalar(
                    select(func.count()).where(
                        Delivery.campaign_key == "newsletter:2026-06-bench",
                        Delivery.status == "sent",
                    )
                )
            engine.dispose()
            again, line2 = timed_send(env, url)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    print(f"sink: {kind}; {args.connections} SMTP connections")
    print(f"newsletter run: {line} in {seconds:.1f} s -> {(sent or 0) / seconds:.0f} emails/s")
    print(f"next run, nothing left: {line2} in {again:.2f} s")
    if sent != args.subscribers:
        raise SystemExit(f"expected {args.subscribers} newsletters sent, found {sent}")


if __name__ == "__main__":
    main()
