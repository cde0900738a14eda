"""The campaign model: what campaigns.toml describes, as plain frozen dataclasses.

No I/O here. drip/config.py reads and validates the file and builds these;
everything else (schedule, sender, render, web) only reads them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import Any

from .rules import EVERYONE, Rule

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

DEFAULT_BANNED_SUBJECT_WORDS = (
    "cramp",
    "cramps",
    "vein",
    "veins",
    "varicose",
    "venous",
    "swelling",
    "swollen",
    "ulcer",
    "sore",
    "clot",
    "thrombosis",
    "dvt",
    "embolism",
    "insufficiency",
    "edema",
    "oedema",
    "disease",
    "diagnosis",
    "symptom",
    "symptoms",
    "pain",
    "itching",
    "itchy",
    "leg",
    "legs",
    "compression",
    "stockings",
    "pregnancy",
)


@dataclass(frozen=True)
class SendWindow:
    """Hours [start, end) on allowed weekdays (0 = Monday), in the subscriber's time zone."""

    start_hour: int = 9
    end_hour: int = 18
    weekdays: frozenset[int] = frozenset(range(7))

    def describe(self) -> str:
        days = ",".join(WEEKDAYS[d] for d in sorted(self.weekdays))
        return f"{self.start_hour:02d}:00-{self.end_hour:02d}:00 {days}"


ALWAYS = SendWindow(0, 24, frozenset(range(7)))


@dataclass(frozen=True)
class Clinic:
    name: str
    postal_address: str
    from_address: str
    reply_to: str
    base_url: str
    timezone: str
    send_window: SendWindow
    phone: str = ""
    booking_url: str = ""
    emergency_number: str = "911"
    unsubscribe_mailto: str = ""
    min_gap: timedelta = timedelta(hours=12)
    # deliverability (drip/bounces.py): VERP envelope sender and soft-bounce tolerance
    bounce_address: str = ""
    soft_bounce_limit: int = 3
    newsletter_archive: bool = False  # the site switch for /newsletters (web/archive.py)

    @cached_property
    def from_email(self) -> str:
        return parseaddr(self.from_address)[1]

    @cached_property
    def sender_domain(self) -> str:
        return self.from_email.rpartition("@")[2]


@dataclass(frozen=True)
class RedFlag:
    key: str
    label: str
    level: str
    advice: str = ""


@dataclass(frozen=True)
class Caution:
    """Advice that is unsafe for some patients: templates read `unsafe.<kind>`."""

    kind: str
    advice: str
    unsafe_with: frozenset[str]
    why: str


@dataclass(frozen=True)
class Origin:
    """Where a step is written in campaigns.toml, so a problem in its subject or
    preheader (Jinja too) is reported as `campaigns.toml:LINE: campaign[0].step[2].subject`."""

    file: str = ""  # empty for steps built in code (the signup page's emails)
    path: str = ""  # campaign[0].step[2]
    lines: tuple[tuple[str, int | None], ...] = ()  # (field, line) pairs

    def line(self, name: str = "") -> int | None:
        return dict(self.lines).get(name) or dict(self.lines).get("")


@dataclass(frozen=True)
class Step:
    key: str
    subject: str
    preheader: str
    template: str
    delay: timedelta
    when: Rule | None = None
    send_window: SendWindow | None = None
    origin: Origin = field(default_factory=Origin, compare=False)


@dataclass(frozen=True)
class Campaign:
    key: str
    name: str
    audience: Rule
    steps: tuple[Step, ...]
    kind: str = "drip"  # "drip" runs on the schedule; "urgent" is sent at once on signup

    @cached_property
    def positions(self) -> dict[str, int]:
        """Step key -> its index in `steps`."""
        return {step.key: i for i, step in enumerate(self.steps)}

    @cached_property
    def offsets(self) -> tuple[timedelta, ...]:
        """Per step, the delays up to and including it: how long after the start it is due."""
        total, found = timedelta(0), []
        for step in self.steps:
            total += step.delay
            found.append(total)
        return tuple(found)

    def step(self, key: str) -> Step:
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(key)


NEWSLETTER_PREFIX = "newsletter:"
NEWSLETTER_TEMPLATES = "newsletters"  # templates/newsletters/, beside templates/emails/


@dataclass(frozen=True)
class Newsletter:
    """A one-off email to everyone active whose symptoms match, at `send_at` local time."""

    key: str
    name: str
    subject: str
    preheader: str
    template: str
    audience: Rule = EVERYONE
    send_at: datetime | None = None  # naive: a wall-clock time in each subscriber's zone
    archive: bool = False

    @property
    def campaign_key(self) -> str:
        """The `campaign_key` of its delivery rows (their `step_key` is `key`)."""
        return NEWSLETTER_PREFIX + self.key

    @cached_property
    def step(self) -> Step:
        """The newsletter as the one step the renderer and the pipeline work with."""
        return Step(
            key=self.key,
            subject=self.subject,
            preheader=self.preheader,
            template=f"{NEWSLETTER_TEMPLATES}/{self.template}",
            delay=timedelta(0),
        )

    @cached_property
    def campaign(self) -> Campaign:
        return Campaign(self.campaign_key, self.name, self.audience, (self.step,), "newsletter")


@dataclass(frozen=True)
class Privacy:
    # answers and names of people who unsubscribed are purged this long after
    keep_after_unsubscribe: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class Quality:
    max_grade: float = 8.0
    banned_subject_words: tuple[str, ...] = DEFAULT_BANNED_SUBJECT_WORDS
    allowed_asset_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    path: Path
    clinic: Clinic
    symptoms: dict[str, str]
    red_flags: dict[str, RedFlag]
    campaigns: tuple[Campaign, ...]
    quality: Quality = field(default_factory=Quality)
    cautions: dict[str, Caution] = field(default_factory=dict)

    def unsafe(self, answers: set[str] | frozenset[str]) -> dict[str, bool]:
        """For each kind of advice in [caution]: is it unsafe for these answers?"""
        return {kind: bool(c.unsafe_with & answers) for kind, c in self.cautions.items()}

    newsletters: tuple[Newsletter, ...] = ()
    privacy: Privacy = field(default_factory=Privacy)

    @property
    def templates_dir(self) -> Path:
        return self.path.parent / "templates" / "emails"

    def campaign(self, key: str) -> Campaign:
        for campaign in self.campaigns:
            if campaign.key == key:
                return campaign
        raise KeyError(key)

    def newsletter(self, key: str) -> Newsletter:
        for newsletter in self.newsletters:
            if newsletter.key == key:
                return newsletter
        raise KeyError(key)

    def urgent_keys(self) -> frozenset[str]:
        """Campaigns whose emails are never held back by min_gap (nor hold others back)."""
        return frozenset(c.key for c in self.campaigns if c.kind == "urgent")

    def drip_campaigns(self) -> tuple[Campaign, ...]:
        return tuple(c for c in self.campaigns if c.kind == "drip")

    def schedule_fingerprint(self) -> str:
        """Changes whenever anything that decides *when* a step is due changes."""
        shape = {
            "window": _window_shape(self.clinic.send_window),
            "tz": self.clinic.timezone,
            "gap": self.clinic.min_gap.total_seconds(),
            "campaigns": [
                [
                    c.key,
                    c.kind,
                    [c.audience.describe()],
                    [
                        [
                            s.key,
                            s.delay.total_seconds(),
                            _window_shape(s.send_window) if s.send_window else None,
                        ]
                        for s in c.steps
                    ],
                ]
                for c in self.campaigns
            ],
        }
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def _window_shape(w: SendWindow) -> list[Any]:
    return [w.start_hour, w.end_hour, sorted(w.weekdays)]
