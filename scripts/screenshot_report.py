"""A sample `drip report` and its screenshot, for the README (docs/report.png).

Simulates twelve weeks of a small clinic list with the shipped campaigns.toml:
signups every day (some never confirm, a few bounce), a `drip send` every weekday
against a local SMTP sink, unsubscribes through the real unsubscribe flow, and two
monthly newsletters, recorded as the newsletter sender records them (deliveries
with campaign_key "newsletter:KEY"). Then writes the report and shoots it with
Debian's Chromium:

    python3 scripts/screenshot_report.py [--out docs] [--html report.html]
"""

from __future__ import annotations

import argparse
import heapq
import random
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from playwright.sync_api import sync_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from mailsink import MailSink  # noqa: E402

from drip import db, enrollment, subscribers  # noqa: E402
from drip.cli import main as drip  # noqa: E402
from drip.config import load_config  # noqa: E402
from drip.models import ACTIVE, Delivery, Subscriber  # noqa: E402
from drip.web import flows  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # a Monday, 08:00 in Chicago
DAYS = 12 * 7 - 3
NOW = START + timedelta(days=DAYS, hours=6)
NEWSLETTERS = {"2026-04-spring-walks": 36, "2026-05-warm-days": 64}  # key: day sent
SYMPTOMS = ["night_cramps", "heavy_legs", "swelling", "visible_veins", "itching"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--html", type=Path, help="Also keep the HTML report here.")
    args = parser.parse_args()
    sink = MailSink().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            shutil.copy(REPO / "campaigns.toml", root / "campaigns.toml")
            shutil.copytree(REPO / "templates", root / "templates")
            env = {
                "DRIP_CONFIG": str(root / "campaigns.toml"),
                "DRIP_DATABASE_URL": f"sqlite:///{root / 'drip.db'}",
                "DRIP_SECRET_KEY": secrets.token_hex(16),
                "DRIP_SMTP_URL": sink.url,
            }
            simulate(root, env, sink)
            html = root / "report.html"
            run(env, "report", "-o", str(html), "--now", NOW.isoformat(), "--weeks", "12")
            if args.html:
                shutil.copy(html, args.html)
            shoot(html, args.out / "report.png")
    finally:
        sink.stop()


def run(env: dict[str, str], *argv: str) -> None:
    result = CliRunner().invoke(drip, list(argv), env=env, catch_exceptions=False)
    if result.exit_code not in (0, 3):
        raise SystemExit(f"drip {' '.join(argv)} failed: {result.output}")


def simulate(root: Path, env: dict[str, str], sink: MailSink) -> None:
    rng = random.Random(9)
    config = load_config(root / "campaigns.toml")
    engine = db.make_engine(env["DRIP_DATABASE_URL"])
    db.ensure_schema(engine)
    queue: list[tuple[datetime, int, Callable[[datetime], None]]] = []
    order = iter(range(10**9))

    def later(when: datetime, action: Callable[[datetime], None]) -> None:
        if when < NOW:
            heapq.heappush(queue, (when, next(order), action))

    def confirm(public_id: str) -> Callable[[datetime], None]:
        def act(now: datetime) -> None:
            with Session(engine) as s:
                flows.confirm(s, config, public_id, now, "203.0.113.9")
                s.commit()

        return act

    def unsubscribe(public_id: str) -> Callable[[datetime], None]:
        def act(now: datetime) -> None:
            with Session(engine) as s:
                flows.unsubscribe(s, config, public_id, now, "one-click")
                s.commit()

        return act

    def newsletter(key: str) -> Callable[[datetime], None]:
        def act(now: datetime) -> None:
            with Session(engine) as s:
                for sub in s.scalars(select(Subscriber).where(Subscriber.status == ACTIVE)):
                    s.add(
                        Delivery(
                            subscriber_id=sub.id,
                            campaign_key=f"newsletter:{key}",
                            step_key=key,
                            status="sent",
                            ref=secrets.token_hex(16),
                            attempts=1,
                            created_at=now,
                            updated_at=now,
                            sent_at=now,
                        )
                    )
                    if rng.random() < 0.03:
                        later(now + timedelta(hours=rng.uniform(1, 40)), unsubscribe(sub.public_id))
                s.commit()

        return act

    n = 0
    for day in range(DAYS):
        noon = START + timedelta(days=day)
        weekday = noon.weekday() < 5
        for _ in range(rng.randint(1, 3 + day // 12) if weekday else rng.randint(0, 2)):
            n += 1
            when = noon + timedelta(minutes=rng.randint(0, 600))
            address = f"patient{n}@example.org"
            if rng.random() < 0.03:
                sink.handler.by_recipient[address] = "reject"  # a mistyped address
            with Session(engine) as s:
                sub = subscribers.create(
                    s,
                    config,
                    email=address,
                    symptoms=rng.sample(SYMPTOMS, rng.randint(1, 3)),
                    now=when,
                    source="web",
                    actor="web",
                )
                s.commit()
                public_id = sub.public_id
            if rng.random() < 0.8:
                confirmed = when + timedelta(minutes=rng.randint(2, 2000))
                later(confirmed, confirm(public_id))
                if rng.random() < 0.15:
                    stay = timedelta(days=rng.expovariate(1 / 9))
                    later(confirmed + stay, unsubscribe(public_id))
        if weekday:
            later(noon + timedelta(hours=2), lambda now: run(env, "send", "--now", now.isoformat()))
    for key, day in NEWSLETTERS.items():
        later(START + timedelta(days=day, hours=1), newsletter(key))
    while queue:
        when, _, action = heapq.heappop(queue)
        action(when)
    with Session(engine) as s:
        for sub in s.scalars(select(Subscriber).where(Subscriber.status == ACTIVE)):
            enrollment.sync_subscriber(s, config, sub, NOW)
        s.commit()


def shoot(html: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 900}, device_scale_factor=1)
        page.goto(html.as_uri())
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
