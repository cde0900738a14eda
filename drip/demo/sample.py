"""`drip demo`, first part: sample patients through simulated weeks of `drip send`.

A fresh SQLite database and patients with different symptoms; the real send loop
runs over simulated weeks with an injected clock, and every email lands in an
outbox folder with an index.html listing what each patient got and when
(`drip demo --no-serve` stops here: no browser, no mail server needed).
"""

from __future__ import annotations

import email
import email.policy
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader
from sqlalchemy.orm import Session

from .. import db, enrollment, subscribers
from ..checks import check_config
from ..config import Config, load_config
from ..render import Renderer
from ..sender import Sender
from ..tokens import Tokens
from ..transport import OutboxTransport
from ..words import plural
from .times import LocalTime, local_time

DEMO_SECRET = "drip-demo-only-secret-never-use-in-production"
DEMO_START = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)  # a Monday morning


@dataclass(frozen=True)
class DemoPatient:
    email: str
    name: str
    timezone: str
    symptoms: tuple[str, ...]


def fixed_clock(moment: datetime) -> Callable[[], datetime]:
    """A clock stopped at `moment` (each simulated send run gets its own)."""
    return lambda: moment


def demo_patients(config: Config) -> list[DemoPatient]:
    """Sample patients built from whatever symptoms campaigns.toml defines."""
    keys = list(config.symptoms)
    flags = list(config.red_flags)
    picks = [
        ("maria", "Maria", "America/Chicago", keys[:1]),
        ("james", "James", "America/New_York", keys[1:3] or keys[:1]),
        ("aisha", "Aisha", "America/Los_Angeles", keys[2:6] or keys[:1]),
        ("tom", "", "Europe/London", keys),
    ]
    if flags:
        picks.append(("lena", "Lena", "America/Denver", [*keys[:1], flags[0]]))
    return [
        DemoPatient(f"{slug}@patient.example", name, tz, tuple(symptoms))
        for slug, name, tz, symptoms in picks
    ]


def demo_newsletters(config: Config, start: datetime, days: int = 2) -> Config:
    """The config with each scheduled newsletter moved to 10:00 local, `days` after
    `start`, so the demo's patients get it alongside their series (drafts stay drafts)."""
    day = start.astimezone(ZoneInfo(config.clinic.timezone)).date() + timedelta(days=days)
    at = datetime.combine(day, time(10, 0))
    moved = tuple(
        replace(n, send_at=at) if n.send_at is not None else n for n in config.newsletters
    )
    return replace(config, newsletters=moved)


def run_demo(
    config_path: Path, folder: Path, *, weeks: int = 6, echo: Callable[[str], None] = print
) -> Path:
    config = demo_newsletters(load_config(config_path), DEMO_START)
    renderer = Renderer(config.templates_dir)  # compiled once for every simulated run
    report = check_config(config, renderer)
    if report.problems:
        raise SystemExit("drip demo: campaigns.toml has problems; run `drip check`")
    if folder.exists():
        shutil.rmtree(folder)
    outbox = folder / "outbox"
    outbox.mkdir(parents=True)
    engine = db.make_engine(f"sqlite:///{(folder / 'demo.db').resolve()}")
    db.ensure_schema(engine)
    patients = demo_patients(config)

    with Session(engine, expire_on_commit=False) as session:
        for p in patients:
            sub = subscribers.create(
                session,
                config,
                email=p.email,
                symptoms=p.symptoms,
                now=DEMO_START,
                first_name=p.name or None,
                timezone=p.timezone,
                confirmed=True,
                source="demo",
                actor="demo",
            )
            enrollment.sync_subscriber(session, config, sub, DEMO_START)
        session.commit()
    echo(f"{len(patients)} sample patients signed up on {DEMO_START:%A %d %B %Y}:")
    for p in patients:
        echo(f"  {p.email:28} {', '.join(p.symptoms)}")
    for n in config.newsletters:
        if n.send_at is not None:
            echo(f"Newsletter {n.name!r} goes on {n.send_at:%A %d %B} at 10:00 local time.")

    transport = OutboxTransport(outbox)
    tokens = Tokens(DEMO_SECRET)
    now = DEMO_START
    total = 0
    while now <= DEMO_START + timedelta(weeks=weeks):
        sender = Sender(
            config,
            engine,
            transport,
            tokens,
            clock=fixed_clock(now),
            renderer=renderer,
            actor="demo",
        )
        total += sender.run().sent
        now += timedelta(hours=1)  # like cron running every hour
    echo(
        f"\nRan `drip send` every simulated hour for {plural(weeks, 'week')}: "
        f"{plural(total, 'email')} sent."
    )
    return write_index(folder, outbox, patients, symptom_labels(config))


def _templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def symptom_labels(config: Config) -> dict[str, str]:
    """What the signup form calls each symptom and warning sign, by key."""
    return {**config.symptoms, **{key: flag.label for key, flag in config.red_flags.items()}}


def write_index(
    folder: Path,
    outbox: Path,
    patients: list[DemoPatient],
    labels: Mapping[str, str] | None = None,
) -> Path:
    """index.html: per patient, their answers as the signup form words them, and
    each email with its simulated send time (the patient's local time) and a link."""
    zones = {p.email: p.timezone for p in patients}
    by_patient: dict[str, list[tuple[LocalTime, str, str]]] = {p.email: [] for p in patients}
    for eml in sorted(outbox.glob("*.eml")):
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        body = msg.get_body(preferencelist=("html",))
        page = eml.with_suffix(".html")
        page.write_text(body.get_content() if body else "", encoding="utf-8")
        sent = email.utils.parsedate_to_datetime(msg["Date"])
        to = str(msg["To"])
        by_patient.setdefault(to, []).append(
            (local_time(sent, zones.get(to, "UTC")), str(msg["Subject"]), f"outbox/{page.name}")
        )
    names = labels or {}
    answers = {p.email: [names.get(key, key) for key in p.symptoms] for p in patients}
    index = folder / "index.html"
    template = _templates().get_template("index.html")
    index.write_text(
        template.render(start=DEMO_START, patients=patients, answers=answers, sent=by_patient),
        encoding="utf-8",
    )
    return index
