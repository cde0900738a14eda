"""Several `drip send` workers on one PostgreSQL database (issue 10), ratios in one run.

    DRIP_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:54329/postgres \\
        python bench/bench_workers.py [--subscribers 2000] [--settings 8,2] [--newsletter]

Seeds N due subscribers in a fresh database, then times 1, 2 and 4 `drip send`
processes started together against bench/slow_relay.py (50 ms per message, as a
remote relay), and checks that every email went exactly once. Two settings in
the same run:
  - connections=8 per worker: one worker can do at most 8 / 50 ms = 160 emails/s,
    four 640/s; on a small machine that is CPU-bound, not relay-bound;
  - connections=2 per worker: one worker can do at most 40/s, four 160/s, well
    within two cores: what the workers' design adds when the relay is the limit.
With --newsletter, the same people are in no series and get one newsletter due
now instead: the workers share it by ranges of subscriber ids (locking.RangeLocks).
Each row gives emails/s over the processes' whole life (start-up included), the
CPU seconds per email of the drip processes (their SMTP children included), of
PostgreSQL (when it runs on this machine and we may read its pid) and of the
relay, and the load average before and after.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from bench_bulk import warm
from bench_newsletter import NEWSLETTER as NEWS
from bench_send import NOW, ROOT, free_port, seed

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds of a process and its reaped children (PostgreSQL's backends are)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(f) for f in fields[11:15]) / TICK


def postmaster_pid(server: str) -> int | None:
    """The local PostgreSQL server's pid, if we may know it (superuser, same machine)."""
    try:
        with psycopg.connect(server, autocommit=True) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        pid = int((Path(row[0]) / "postmaster.pid").read_text().split()[0])  # type: ignore[index]
    except (psycopg.Error, OSError, ValueError, TypeError):
        return None
    return pid if process_cpu(pid) is not None else None


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def fresh_database(server: str) -> str:
    name = f"drip_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}"


def drop_database(server: str, url: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]}")


def run_workers(env: dict[str, str], url: str, workers: int) -> tuple[float, int, float]:
    """Wall seconds, emails sent and CPU seconds of `workers` drip sends started together."""
    env = {**os.environ, **env, "DRIP_SMTP_URL": url}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed drip has its bytecode cached
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return seconds, sent, cpu


def measure(
    server: str,
    count: int,
    connections: int,
    latency: float,
    workers: int,
    pg: int | None,
    newsletter: bool = False,
) -> dict[str, object]:
    port = free_port()
    relay = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "slow_relay.py"), str(port), str(latency)]
    )
    url = f"smtp://127.0.0.1:{port}?starttls=off&connections={connections}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = seed(Path(tmp), count)  # the folder and files; the database is PostgreSQL
            if newsletter:
                add_newsletter(Path(tmp))
            env["DRIP_DATABASE_URL"] = fresh_database(server)
            try:
                seed_postgres(env, count, newsletter)
                warm(env)
                time.sleep(0.5)  # the relay is listening
                load_before = load()
                relay_cpu, pg_cpu = process_cpu(relay.pid), process_cpu(pg)
                seconds, sent, drip_cpu = run_workers(env, url, workers)
                relay_used = (process_cpu(relay.pid) or 0) - (relay_cpu or 0)
                pg_used = (process_cpu(pg) or 0) - pg_cpu if pg_cpu is not None else None
                unique = sent_once(env["DRIP_DATABASE_URL"])
            finally:
                drop_database(server, env["DRIP_DATABASE_URL"])
    finally:
        relay.terminate()
        relay.wait()
    assert sent == count == unique, (sent, count, unique)  # each exactly once
    row: dict[str, object] = {
        "workers": workers,
        "emails_per_second": round(sent / seconds, 1),
        "seconds": round(seconds, 2),
        "drip_cpu_ms_per_email": round(1000 * drip_cpu / sent, 2),
        "relay_cpu_ms_per_email": round(1000 * relay_used / sent, 2),
    }
    if pg_used is not None:
        row["postgres_cpu_ms_per_email"] = round(1000 * pg_used / sent, 2)
    row["load_average_before_after"] = f"{load_before} / {load()}"
    return row


def sent_once(url: str) -> int:
    """Distinct (subscriber, step) pairs sent; the unique key allows no other count."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT (subscriber_id, campaign_key, step_key)), count(*)"
            " FROM deliveries WHERE status = 'sent'"
        ).fetchone()
    assert row is not None and row[0] == row[1], row
    return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument(
        "--settings", default="8,2", help="connections per worker, one setting each"
    )
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument(
        "--newsletter",
        action="store_true",
        help="Send one newsletter to everyone (in no series) instead of a series step.",
    )
    args = parser.parse_args()
    server = os.environ.get("DRIP_BENCH_POSTGRES_URL") or os.environ["DRIP_TEST_POSTGRES_URL"]
    pg = postmaster_pid(server)
    compileall.compile_dir(ROOT / "drip", quiet=1)  # as installed: start-up reads bytecode
    results: list[dict[str, object]] = []
    for connections in (int(c) for c in args.settings.split(",")):
        rows = []
        for workers in (int(w) for w in args.workers.split(",")):
            rows.append(
                measure(
                    server,
                    args.subscribers,
                    connections,
                    args.latency,
                    workers,
                    pg,
                    args.newsletter,
                )
            )
            print(json.dumps({"connections_per_worker": connections, **rows[-1]}), flush=True)
        one = float(rows[0]["emails_per_second"])  # type: ignore[arg-type]
        results.append(
            {
                "connections_per_worker": connections,
                "relay_bound_emails_per_second_per_worker": round(connections / args.latency),
                "ratios_to_first": [
                    round(float(r["emails_per_second"]) / one, 2)  # type: ignore[arg-type]
                    for r in rows
                ],
                "rows": rows,
            }
        )
    print(json.dumps({"emails": args.subscribers, "settings": results}, indent=2))


# bench_newsletter's newsletter, due at NOW: the subscribers here confirmed at NOW
NEWSLETTER = NEWS.replace('send_at = "2026-06-02 10:00"', 'send_at = "2026-06-01 15:00"')


def add_newsletter(folder: Path) -> None:
    """A newsletter due at NOW for everyone (UTC subscribers who confirmed at NOW)."""
    with (folder / "campaigns.toml").open("a") as f:
        f.write(NEWSLETTER)
    (folder / "templates" / "newsletters").mkdir(exist_ok=True)
    news = ROOT / "tests" / "fixtures" / "newsletters" / "news.mjml"
    (folder / "templates" / "newsletters" / "news.mjml").write_text(news.read_text())


def seed_postgres(env: dict[str, str], count: int, newsletter: bool = False) -> None:
    """The same due subscribers as bench_send.seed, in the PostgreSQL database; with
    `newsletter`, the same people with no symptoms, so in no series."""
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
        if not newsletter:
            session.execute(
                insert(Symptom),
                [dict(subscriber_id=i, key="night_cramps") for i in range(1, count + 1)],
            )
        if not newsletter:
            session.execute(
                insert(Enrollment),
                [
                    dict(subscriber_id=i, campaign_key="leg-health", started_at=NOW, state="active",
                         next_step_key="welcome", next_due_at=NOW)
                    for i in range(1, count + 1)
                ],
            )  # fmt: skip
        config = load_config(Path(env["DRIP_CONFIG"]))
        session.add(Meta(key=FINGERPRINT_KEY, value=config.schedule_fingerprint()))
        session.commit()
    engine.dispose()


if __name__ == "__main__":
    main()
