"""Several `drip send` workers on one PostgreSQL database (issue 10), ratios in one run.

    DRIP_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:54329/postgres \\
        python bench/bench_workers.py [--subscribers 2000] [--connections 8]

Seeds N due subscribers in a fresh database, then times 1, 2 and 4 `drip send`
processes started together against bench/slow_relay.py (50 ms per message, as a
remote relay), and checks that every email went exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from bench_bulk import warm
from bench_send import NOW, ROOT, free_port, seed


def fresh_database(server: str) -> str:
    name = f"drip_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}"


def run_workers(env: dict[str, str], url: str, workers: int) -> tuple[float, int]:
    env = {**os.environ, **env, "DRIP_SMTP_URL": url}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "drip", "send", "--now", NOW.isoformat()],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    sent = 0
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"drip send failed: {out}")
        sent += int(out.strip().splitlines()[-1].split(": ")[1].split()[0])
    return time.perf_counter() - start, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    server = os.environ.get("DRIP_BENCH_POSTGRES_URL") or os.environ["DRIP_TEST_POSTGRES_URL"]
    port = free_port()
    relay = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "slow_relay.py"), str(port), str(args.latency)]
    )
    url = f"smtp://127.0.0.1:{port}?starttls=off&connections={args.connections}"
    results: dict[str, object] = {"connections_per_worker": args.connections}
    try:
        time.sleep(1)
        for workers in (1, 2, 4):
            with tempfile.TemporaryDirectory() as tmp:
                env = seed(Path(tmp), args.subscribers)  # SQLite, then moved to PostgreSQL
                env["DRIP_DATABASE_URL"] = fresh_database(server)
                seed_postgres(env, args.subscribers)
                warm(env)
                seconds, sent = run_workers(env, url, workers)
            assert sent == args.subscribers, (sent, args.subscribers)  # each exactly once
            results[f"{workers}_workers_emails_per_second"] = round(sent / seconds)
    finally:
        relay.terminate()
    one = results["1_workers_emails_per_second"]
    results["ratio_2_to_1"] = round(results["2_workers_emails_per_second"] / one, 2)  # type: ignore[operator]
    results["ratio_4_to_1"] = round(results["4_workers_emails_per_second"] / one, 2)  # type: ignore[operator]
    print(json.dumps(results, indent=2))


def seed_postgres(env: dict[str, str], count: int) -> None:
    """The same due subscribers as bench_send.seed, in the PostgreSQL database."""
    from bench_send import FIXTURE
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from drip import db
    from drip.config import load_config
    from drip.enrollment import FINGERPRINT_KEY
    from drip.models import Enrollment, Meta, Subscriber, Symptom

    engine = db.make_engine(env["DRIP_DATABASE_URL"])
    db.ensure_schema(engine)
    with Session(engine) as session:
        session.execute(
            insert(Subscriber),
            [
                dict(id=i, public_id=f"{i:032x}", email=f"p{i}@example.org", timezone="UTC",
                     status="active", created_at=NOW, confirmed_at=NOW, source="bench",
                     soft_bounces=0)
                for i in range(1, count + 1)
            ],
        )  # fmt: skip
        session.execute(
            insert(Symptom),
            [dict(subscriber_id=i, key="night_cramps") for i in range(1, count + 1)],
        )
        session.execute(
            insert(Enrollment),
            [
                dict(subscriber_id=i, campaign_key="leg-health", started_at=NOW, state="active",
                     next_step_key="welcome", next_due_at=NOW)
                for i in range(1, count + 1)
            ],
        )  # fmt: skip
        session.add(
            Meta(
                key=FINGERPRINT_KEY,
                value=load_config(FIXTURE / "campaigns.toml").schedule_fingerprint(),
            )
        )
        session.commit()
    engine.dispose()


if __name__ == "__main__":
    main()
