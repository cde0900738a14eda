"""Load and validate campaigns.toml, the clinic marketer's file, into the model
of drip/campaigns.py (re-exported here: `from drip.config import Config` works).

Every problem is collected and reported at once, each with the file, the line and
the field path (`campaign[0].step[2].delay`), so a marketer fixes the file in one
pass. A file with any problem yields no Config: nothing can be sent from it.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .campaigns import (
    ALWAYS,
    DEFAULT_BANNED_SUBJECT_WORDS,
    NEWSLETTER_PREFIX,
    NEWSLETTER_TEMPLATES,
    WEEKDAYS,
    Campaign,
    Caution,
    Clinic,
    Config,
    Newsletter,
    Origin,
    Privacy,
    Quality,
    RedFlag,
    SendWindow,
    Step,
)
from .durations import parse_duration
from .rules import EVERYONE, RULE_KINDS, Rule
from .tomlpos import field_lines, line_for

RED_FLAG_LEVELS = ("emergency", "urgent", "soon")
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
# a newsletter key may start with a digit ("2026-12-travel"); "newsletter:" + key
# is its deliveries' campaign_key, which holds 64 characters
NEWSLETTER_KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,52}$")

# the model, for the many modules that import it from here
__all__ = [
    "ALWAYS",
    "DEFAULT_BANNED_SUBJECT_WORDS",
    "NEWSLETTER_PREFIX",
    "NEWSLETTER_TEMPLATES",
    "WEEKDAYS",
    "Campaign",
    "Caution",
    "Clinic",
    "Config",
    "ConfigError",
    "Newsletter",
    "Origin",
    "Privacy",
    "Problem",
    "Quality",
    "RedFlag",
    "SendWindow",
    "Step",
    "load_config",
    "valid_timezone",
]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """campaigns.toml has problems; `problems` lists every one of them."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        count = len(problems)
        if count == 1:  # one problem, one line
            super().__init__(str(problems[0]))
            return
        super().__init__(
            f"{count} problems in the configuration:\n" + "\n".join(f"  {p}" for p in problems)
        )


class _Checker:
    """Collects problems while walking the raw TOML data."""

    def __init__(self, path: Path, text: str):
        self.file = str(path)
        self.lines = field_lines(text)
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, line_for(self.lines, path), path, message))

    def table(self, data: Any, path: str) -> dict[str, Any]:
        if isinstance(data, dict):
            return data
        self.add(path, f"must be a table, not {_kind(data)}")
        return {}

    def unknown_keys(self, data: dict[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        for key in data:
            if key not in allowed:
                hint = _did_you_mean(key, allowed)
                where = f"{path}.{key}" if path else key
                self.add(where, f"unknown field {key!r}{hint}")

    def string(
        self, data: dict[str, Any], key: str, path: str, required: bool = True, default: str = ""
    ) -> str:
        where = f"{path}.{key}"
        if key not in data:
            if required:
                self.add(where, "is required")
            return default
        value = data[key]
        if not isinstance(value, str):
            self.add(where, f"must be a string, not {_kind(value)}")
            return default
        if required and not value.strip():
            self.add(where, "must not be empty")
        if "\r" in value or ("\n" in value and key not in ("postal_address", "advice", "why")):
            self.add(where, "must be a single line")
        return value.strip()

    def key(self, data: dict[str, Any], path: str, seen: set[str], twice: str) -> str:
        """A required identity key: well formed, and not used before (`seen` grows)."""
        key = self.string(data, "key", path)
        if key and not KEY_PATTERN.match(key):
            self.add(f"{path}.key", "keys are lower-case letters, digits, _ and -")
        if key in seen:
            self.add(f"{path}.key", twice.format(key))
        seen.add(key)
        return key

    def symptom_list(self, value: Any, path: str, vocabulary: dict[str, str]) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(path, f"must be a list of symptom keys, not {_kind(value)}")
            return frozenset()
        for i, key in enumerate(value):
            if key not in vocabulary:
                hint = _did_you_mean(key, tuple(vocabulary))
                self.add(f"{path}[{i}]", f"unknown symptom {key!r}{hint}")
        return frozenset(value)

    def rule(self, value: Any, path: str, vocabulary: dict[str, str]) -> Rule:
        data = self.table(value, path)
        self.unknown_keys(data, path, RULE_KINDS)
        clauses = {
            k: self.symptom_list(data[k], f"{path}.{k}", vocabulary)
            for k in RULE_KINDS
            if k in data
        }
        return Rule(**clauses)

    def window(self, value: Any, path: str, base: SendWindow) -> SendWindow:
        data = self.table(value, path)
        self.unknown_keys(data, path, ("start", "end", "days"))
        start = self.hour(data.get("start", base.start_hour), f"{path}.start")
        end = self.hour(data.get("end", base.end_hour), f"{path}.end")
        if start >= end:
            self.add(
                path, f"start ({start}) must be before end ({end}); windows cannot cross midnight"
            )
        days = base.weekdays
        if "days" in data:
            raw = data["days"]
            if not isinstance(raw, list) or not raw:
                self.add(f"{path}.days", 'must be a non-empty list like ["mon", "tue"]')
            else:
                picked = set()
                for i, day in enumerate(raw):
                    name = str(day).lower()[:3]
                    if name in WEEKDAYS:
                        picked.add(WEEKDAYS.index(name))
                    else:
                        self.add(
                            f"{path}.days[{i}]",
                            f"unknown weekday {day!r}; use " + ", ".join(WEEKDAYS),
                        )
                days = frozenset(picked) or base.weekdays
        return SendWindow(start, end, days)

    def hour(self, value: Any, path: str) -> int:
        if isinstance(value, str) and re.fullmatch(r"\d{1,2}:00", value):
            value = int(value.split(":")[0])
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 24:
            self.add(path, f'must be an hour from 0 to 24 (or "09:00"), not {value!r}')
            return 0
        return value

    def duration(
        self, data: dict[str, Any], key: str, path: str, default: timedelta | None = None
    ) -> timedelta:
        where = f"{path}.{key}"
        if key not in data:
            if default is None:
                self.add(where, 'is required (for example "3d")')
            return default or timedelta(0)
        try:
            if not isinstance(data[key], str):
                raise ValueError(f'must be a string like "3d", not {_kind(data[key])}')
            value = parse_duration(data[key])
        except ValueError as exc:
            self.add(where, str(exc))
            return timedelta(0)
        if value < timedelta(0):
            self.add(where, "must not be negative")
        if value > MAX_DELAY:  # dates past year 9999 cannot be computed
            self.add(where, f"{data[key]!r} is longer than 10 years")
            return timedelta(0)
        return value


def _kind(value: Any) -> str:
    names = {
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def load_config(path: str | Path) -> Config:
    """Read and validate campaigns.toml. Raises ConfigError listing every problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")  # a byte-order mark from Windows editors is fine
    except IsADirectoryError:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    None,
                    "",
                    "is a folder; DRIP_CONFIG must name the campaigns.toml file",
                )
            ]
        ) from None
    except FileNotFoundError:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    None,
                    "",
                    "file not found (set DRIP_CONFIG "
                    "or run drip in the folder that holds campaigns.toml)",
                )
            ]
        ) from None
    except PermissionError:
        raise ConfigError(
            [Problem(str(path), None, "", "cannot be read: permission denied")]
        ) from None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [
                Problem(
                    str(path),
                    line,
                    "",
                    f"is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
                )
            ]
        ) from None
    deep = too_deep(text)
    if deep is not None:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    deep,
                    "",
                    f"lists or tables are nested more than {MAX_NESTING} deep here",
                )
            ]
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"at line (\d+)", str(exc))
        at = int(match.group(1)) if match else None
        raise ConfigError([Problem(str(path), at, "", f"is not valid TOML: {exc}")]) from None
    return _build(path, text, data)


MAX_DELAY = timedelta(days=3653)
MAX_NESTING = 20  # campaigns.toml needs 3; tomllib recurses once per level


def too_deep(text: str) -> int | None:
    """The line where [ and { nest deeper than MAX_NESTING, outside strings and comments."""
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif ch in "\"'":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                if text[j] == "\\" and ch == '"':
                    j += 1
                elif text[j] == "\n" and len(quote) == 1:
                    break  # an unclosed string: tomllib will say so
                j += 1
            line += text.count("\n", i, j)
            i = j + len(quote)
            continue
        elif ch in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return line
        elif ch in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return None


TOP_LEVEL = (
    "clinic",
    "symptoms",
    "red_flags",
    "caution",
    "campaign",
    "newsletter",
    "quality",
    "privacy",
)
CAUTION_FIELDS = ("advice", "unsafe_with", "why")
CLINIC_FIELDS = (
    "name",
    "postal_address",
    "from",
    "reply_to",
    "base_url",
    "timezone",
    "send_window",
    "phone",
    "booking_url",
    "emergency_number",
    "unsubscribe_mailto",
    "min_gap",
    "bounce_address",
    "soft_bounce_limit",
    "newsletter_archive",
)
CAMPAIGN_FIELDS = ("key", "name", "audience", "step", "kind")
STEP_FIELDS = ("key", "subject", "preheader", "template", "delay", "when", "send_window")
NEWSLETTER_FIELDS = (
    "key",
    "name",
    "subject",
    "preheader",
    "template",
    "audience",
    "send_at",
    "archive",
)


def _build(path: Path, text: str, data: dict[str, Any]) -> Config:
    c = _Checker(path, text)
    c.unknown_keys(data, "", TOP_LEVEL)
    clinic = _clinic(c, c.table(data.get("clinic", {}), "clinic"), "clinic" in data)
    symptoms = _symptoms(c, data)
    red_flags = _red_flags(c, data)
    cautions = _cautions(c, data, {**symptoms, **{k: f.label for k, f in red_flags.items()}})
    templates_dir = path.parent / "templates" / "emails"
    campaigns = _campaigns(c, data, symptoms, clinic.send_window, templates_dir)
    quality = _quality(c, c.table(data.get("quality", {}), "quality"))
    newsletters = _newsletters(c, data, symptoms, {k.key for k in campaigns}, path.parent)
    privacy_data = c.table(data.get("privacy", {}), "privacy")
    c.unknown_keys(privacy_data, "privacy", ("keep_after_unsubscribe",))
    privacy = Privacy(
        c.duration(
            privacy_data,
            "keep_after_unsubscribe",
            "privacy",
            default=Privacy.keep_after_unsubscribe,
        )
    )
    if c.problems:
        raise ConfigError(c.problems)
    return Config(
        path,
        clinic,
        symptoms,
        red_flags,
        campaigns,
        quality,
        cautions=cautions,
        newsletters=newsletters,
        privacy=privacy,
    )


def _clinic(c: _Checker, data: dict[str, Any], present: bool) -> Clinic:
    if not present:
        c.add("clinic", "the [clinic] table is required (name, postal_address, from, ...)")
    c.unknown_keys(data, "clinic", CLINIC_FIELDS)
    name = c.string(data, "name", "clinic")
    address = c.string(data, "postal_address", "clinic")
    sender = c.string(data, "from", "clinic")
    if sender and "@" not in parseaddr(sender)[1]:
        c.add(
            "clinic.from",
            f'{sender!r} is not an email address like "Clinic Name <news@clinic.example>"',
        )
    reply_to = c.string(data, "reply_to", "clinic", required=False, default=sender)
    if reply_to and not all("@" in a for _, a in getaddresses([reply_to])):
        c.add("clinic.reply_to", f"{reply_to!r} is not an email address")
    base_url = c.string(data, "base_url", "clinic").rstrip("/")
    if base_url and not re.match(r"^https?://[^\s/]+", base_url):
        c.add("clinic.base_url", "must be an absolute URL like https://clinic.example")
    timezone = c.string(data, "timezone", "clinic", required=False, default="UTC")
    if not valid_timezone(timezone):
        c.add(
            "clinic.timezone",
            f'unknown time zone {timezone!r}; use an IANA name like "America/Chicago"',
        )
    window = SendWindow()
    if "send_window" in data:
        window = c.window(data["send_window"], "clinic.send_window", window)
    booking = c.string(data, "booking_url", "clinic", required=False)
    if booking and not booking.startswith("https://"):
        c.add("clinic.booking_url", "must be an https:// URL")
    mailto = c.string(data, "unsubscribe_mailto", "clinic", required=False)
    if mailto and "@" not in mailto:
        c.add("clinic.unsubscribe_mailto", "must be an email address")
    bounce = c.string(data, "bounce_address", "clinic", required=False)
    if bounce and not re.fullmatch(r"[A-Za-z0-9._\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}", bounce):
        c.add(
            "clinic.bounce_address",
            f'{bounce!r} must be a plain address like "bounce@clinic.example" '
            "(no name, no +; drip adds +REF to it for each email)",
        )
    soft_limit = data.get("soft_bounce_limit", 3)
    if isinstance(soft_limit, bool) or not isinstance(soft_limit, int) or not 1 <= soft_limit <= 20:
        c.add("clinic.soft_bounce_limit", f"must be a number from 1 to 20, not {soft_limit!r}")
        soft_limit = 3
    archive = data.get("newsletter_archive", False)
    if not isinstance(archive, bool):
        c.add("clinic.newsletter_archive", f"must be true or false, not {_kind(archive)}")
        archive = False
    return Clinic(
        name=name,
        postal_address=address,
        from_address=sender,
        reply_to=reply_to,
        base_url=base_url,
        timezone=timezone,
        send_window=window,
        phone=c.string(data, "phone", "clinic", required=False),
        booking_url=booking,
        emergency_number=c.string(
            data, "emergency_number", "clinic", required=False, default="911"
        ),
        unsubscribe_mailto=mailto,
        min_gap=c.duration(data, "min_gap", "clinic", default=timedelta(hours=12)),
        bounce_address=bounce.lower(),
        soft_bounce_limit=soft_limit,
        newsletter_archive=archive,
    )


def valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _symptoms(c: _Checker, data: dict[str, Any]) -> dict[str, str]:
    raw = c.table(data.get("symptoms", {}), "symptoms")
    if not raw:
        c.add("symptoms", "the [symptoms] table must list at least one symptom")
    symptoms: dict[str, str] = {}
    for key, label in raw.items():
        if not KEY_PATTERN.match(key):
            c.add(f"symptoms.{key}", "keys are lower-case letters, digits, _ and -")
        if not isinstance(label, str) or not label.strip():
            c.add(f"symptoms.{key}", "must be the label patients see, as a string")
            continue
        symptoms[key] = label.strip()
    return symptoms


def _red_flags(c: _Checker, data: dict[str, Any]) -> dict[str, RedFlag]:
    raw = c.table(data.get("red_flags", {}), "red_flags")
    flags: dict[str, RedFlag] = {}
    for key, value in raw.items():
        path = f"red_flags.{key}"
        entry = c.table(value, path)
        c.unknown_keys(entry, path, ("label", "level", "advice"))
        label = c.string(entry, "label", path)
        level = c.string(entry, "level", path)
        if level and level not in RED_FLAG_LEVELS:
            c.add(
                f"{path}.level",
                f"must be one of {', '.join(RED_FLAG_LEVELS)}, not "
                f"{level!r}{_did_you_mean(level, RED_FLAG_LEVELS)}",
            )
        if key in data.get("symptoms", {}):
            c.add(path, f"{key!r} is both a symptom and a red flag; use one")
        flags[key] = RedFlag(key, label, level, c.string(entry, "advice", path, required=False))
    return flags


def _cautions(c: _Checker, data: dict[str, Any], answers: dict[str, str]) -> dict[str, Caution]:
    """[caution.<kind>]: the safety model, one entry per kind of advice."""
    raw = c.table(data.get("caution", {}), "caution")
    cautions: dict[str, Caution] = {}
    for kind, value in raw.items():
        path = f"caution.{kind}"
        if not KEY_PATTERN.match(kind) or "-" in kind:
            # templates write unsafe.<kind>: a '-' would not parse there
            c.add(path, "kinds are lower-case letters, digits and _")
        entry = c.table(value, path)
        c.unknown_keys(entry, path, CAUTION_FIELDS)
        advice = c.string(entry, "advice", path)
        why = c.string(entry, "why", path)
        keys: frozenset[str] = frozenset()
        if "unsafe_with" not in entry:
            c.add(f"{path}.unsafe_with", "is required: the symptom and warning-sign keys")
        else:
            keys = c.symptom_list(entry["unsafe_with"], f"{path}.unsafe_with", answers)
            if not keys and isinstance(entry["unsafe_with"], list):
                c.add(f"{path}.unsafe_with", "must name at least one symptom or warning sign")
        cautions[kind] = Caution(kind, advice, keys, why)
    return cautions


def _campaigns(
    c: _Checker,
    data: dict[str, Any],
    symptoms: dict[str, str],
    clinic_window: SendWindow,
    templates_dir: Path,
) -> tuple[Campaign, ...]:
    raw = data.get("campaign", [])
    if not isinstance(raw, list):
        c.add("campaign", "write campaigns as [[campaign]] tables")
        return ()
    # red flags may steer rules too (an urgent campaign's audience is a red flag)
    vocabulary = {**symptoms, **{k: "" for k in c.table(data.get("red_flags", {}), "")}}
    campaigns: list[Campaign] = []
    seen: set[str] = set()
    for i, value in enumerate(raw):
        path = f"campaign[{i}]"
        entry = c.table(value, path)
        c.unknown_keys(entry, path, CAMPAIGN_FIELDS)
        key = c.key(entry, path, seen, "campaign key {!r} is used twice")
        kind = c.string(entry, "kind", path, required=False, default="drip")
        if kind not in ("drip", "urgent"):
            c.add(f"{path}.kind", f'must be "drip" or "urgent", not {kind!r}')
        audience = (
            c.rule(entry["audience"], f"{path}.audience", vocabulary)
            if "audience" in entry
            else EVERYONE
        )
        # urgent advice never waits for office hours: any hour, any day
        steps = _steps(
            c,
            entry.get("step", []),
            path,
            vocabulary,
            clinic_window,
            templates_dir,
            default_window=ALWAYS if kind == "urgent" else None,
        )
        campaigns.append(Campaign(key, c.string(entry, "name", path), audience, steps, kind))
    return tuple(campaigns)


def _steps(
    c: _Checker,
    raw: Any,
    path: str,
    vocabulary: dict[str, str],
    clinic_window: SendWindow,
    templates_dir: Path,
    default_window: SendWindow | None = None,
) -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        c.add(f"{path}.step", "a campaign needs at least one [[campaign.step]]")
        return ()
    steps: list[Step] = []
    seen: set[str] = set()
    for j, value in enumerate(raw):
        where = f"{path}.step[{j}]"
        entry = c.table(value, where)
        c.unknown_keys(entry, where, STEP_FIELDS)
        key = c.key(entry, where, seen, "step key {!r} is used twice in this campaign")
        template = c.string(entry, "template", where)
        if template and (templates_dir / f"{template}.mjml").is_dir():
            c.add(f"{where}.template", f"{templates_dir / template}.mjml is a folder, not a file")
        elif template and not (templates_dir / f"{template}.mjml").is_file():
            known = sorted(
                p.stem for p in templates_dir.glob("*.mjml") if not p.stem.startswith("_")
            )
            c.add(
                f"{where}.template",
                f"no template {template}.mjml in {templates_dir}" + _did_you_mean(template, known),
            )
        steps.append(
            Step(
                key=key,
                subject=c.string(entry, "subject", where),
                preheader=c.string(entry, "preheader", where, required=False),
                template=template,
                delay=c.duration(entry, "delay", where),
                when=c.rule(entry["when"], f"{where}.when", vocabulary)
                if "when" in entry
                else None,
                send_window=(
                    c.window(entry["send_window"], f"{where}.send_window", clinic_window)
                    if "send_window" in entry
                    else default_window
                ),
                origin=Origin(
                    c.file,
                    where,
                    tuple(
                        (name, line_for(c.lines, f"{where}.{name}" if name else where))
                        for name in ("", "subject", "preheader", "template")
                    ),
                ),
            )
        )
    return tuple(steps)


SEND_AT_FORMAT = "%Y-%m-%d %H:%M"


def _newsletters(
    c: _Checker,
    data: dict[str, Any],
    symptoms: dict[str, str],
    campaign_keys: set[str],
    root: Path,
) -> tuple[Newsletter, ...]:
    raw = data.get("newsletter", [])
    if not isinstance(raw, list):
        c.add("newsletter", "write newsletters as [[newsletter]] tables")
        return ()
    vocabulary = {**symptoms, **{k: "" for k in c.table(data.get("red_flags", {}), "")}}
    folder = root / "templates" / NEWSLETTER_TEMPLATES
    found: list[Newsletter] = []
    seen: set[str] = set()
    for i, value in enumerate(raw):
        path = f"newsletter[{i}]"
        entry = c.table(value, path)
        c.unknown_keys(entry, path, NEWSLETTER_FIELDS)
        key = c.string(entry, "key", path)
        if key and not NEWSLETTER_KEY_PATTERN.match(key):
            c.add(
                f"{path}.key",
                "newsletter keys are lower-case letters, digits, _ and -, at most 53 of them",
            )
        if key in seen:
            c.add(f"{path}.key", f"newsletter key {key!r} is used twice")
        seen.add(key)
        if key in campaign_keys:
            c.add(f"{path}.key", f"{key!r} is already a campaign's key; use another")
        template = c.string(entry, "template", path)
        if template and not (folder / f"{template}.mjml").is_file():
            known = sorted(p.stem for p in folder.glob("*.mjml"))
            c.add(
                f"{path}.template",
                f"no template {template}.mjml in {folder}" + _did_you_mean(template, known),
            )
        archive = entry.get("archive", False)
        if not isinstance(archive, bool):
            c.add(f"{path}.archive", f"must be true or false, not {_kind(archive)}")
            archive = False
        found.append(
            Newsletter(
                key=key,
                name=c.string(entry, "name", path),
                subject=c.string(entry, "subject", path),
                preheader=c.string(entry, "preheader", path, required=False),
                template=template,
                audience=(
                    c.rule(entry["audience"], f"{path}.audience", vocabulary)
                    if "audience" in entry
                    else EVERYONE
                ),
                send_at=_send_at(c, entry, path),
                archive=archive,
            )
        )
    return tuple(found)


def _send_at(c: _Checker, entry: dict[str, Any], path: str) -> datetime | None:
    """A wall-clock time without a zone: "2026-12-01 10:00" (or a TOML local date-time)."""
    if "send_at" not in entry:
        return None  # a draft: previewable, never sent
    value = entry["send_at"]
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            c.add(
                f"{path}.send_at",
                "must be a local time without a zone (each subscriber gets it at that "
                'time in their own zone), like "2026-12-01 10:00"',
            )
            return None
        return value
    if isinstance(value, str):
        try:
            return datetime.strptime(value.strip(), SEND_AT_FORMAT)
        except ValueError:
            pass
    c.add(f"{path}.send_at", f'must be a local time like "2026-12-01 10:00", not {value!r}')
    return None


def _quality(c: _Checker, data: dict[str, Any]) -> Quality:
    c.unknown_keys(data, "quality", ("max_grade", "banned_subject_words", "allowed_asset_hosts"))
    q = Quality()
    grade = data.get("max_grade", q.max_grade)
    if isinstance(grade, bool) or not isinstance(grade, int | float) or not 1 <= grade <= 20:
        c.add("quality.max_grade", f"must be a grade from 1 to 20, not {grade!r}")
        grade = q.max_grade
    words = data.get("banned_subject_words", list(q.banned_subject_words))
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        c.add("quality.banned_subject_words", "must be a list of words")
        words = list(q.banned_subject_words)
    hosts = data.get("allowed_asset_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        c.add("quality.allowed_asset_hosts", "must be a list of host names")
        hosts = []
    return Quality(float(grade), tuple(w.lower() for w in words), tuple(hosts))
