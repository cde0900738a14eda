"""`drip subscribers import`: a clinic's existing list from a CSV file.

Columns: email (required), first_name, timezone, symptoms (keys separated by
";"), consent (the basis on which the clinic may email this person; else
--consent). Rows are checked one by one (pure: each bad row gets its line in the
file, the header being line 1, and a reason), then written set-based, a
thousand at a time: one query finds who exists, one who is suppressed, and bulk
INSERTs add the rest with their answers, enrollments and audit entries.

Idempotent: an address drip already holds is left exactly as it is, so a second
import of the same file adds nothing, and nobody unsubscribed, bounced or
suppressed is ever subscribed again by an import.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from .config import Config, valid_timezone
from .enrollment import apply_plan
from .mailqueue import QUEUED, mailbox_hash
from .message import new_ref
from .models import (
    ACTIVE,
    ENROLLED,
    PENDING,
    AuditEntry,
    Enrollment,
    QueuedMail,
    Subscriber,
    Suppression,
    Symptom,
)
from .schedule import plan_next
from .subscribers import InvalidSubscriber, address_hash, clean_name, normalize_email

COLUMNS = ("email", "first_name", "timezone", "symptoms", "consent")
CHUNK = 1000
IMPORT_PRIORITY = 2  # confirmation emails of an import wait behind web signups
MAX_CONSENT = 500


class ImportProblem(ValueError):
    """The file as a whole cannot be read; nothing was imported."""


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    first_name: str | None
    timezone: str
    symptoms: frozenset[str]
    consent: str


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    existing: int = 0  # already held: left exactly as they are
    suppressed: int = 0  # on the suppression list: never imported
    bad: list[BadRow] = field(default_factory=list)

    def line(self, dry_run: bool) -> str:
        verb = "would import" if dry_run else "imported"
        return (
            f"{self.rows} {'row' if self.rows == 1 else 'rows'}: {self.imported} {verb}, "
            f"{self.existing} already there "
            f"(left unchanged), {self.suppressed} suppressed (skipped), {len(self.bad)} bad"
        )


# a plain ASCII address, the common case: normalized without email-validator's
# full parse (177 us a row); anything else takes the full path
_PLAIN = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_SPECIAL = tuple(SPECIAL_USE_DOMAIN_NAMES)


def fast_normalize(raw: str) -> str:
    """The same result as subscribers.normalize_email, quicker for plain addresses."""
    address = raw.strip()
    if _PLAIN.fullmatch(address) and len(address) <= 254:
        local, _, domain = address.rpartition("@")
        top = domain.rsplit(".", 1)[-1].lower()
        if len(local) <= 64 and top not in _SPECIAL and "xn--" not in domain.lower():
            return address.lower()
    return normalize_email(raw)


def read_rows(path: Path, config: Config, consent: str | None) -> Iterator[Row | BadRow]:
    """Each data row, checked; raises ImportProblem when the file itself is wrong."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ImportProblem(f"{path}: is a folder, not a CSV file") from None
    except OSError as exc:
        raise ImportProblem(f"{path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ImportProblem(f"{path}:{line}: is not UTF-8 text; save the file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ImportProblem(f"{path}: is empty; the first line must name the columns") from None
    unknown = [h for h in header if h not in COLUMNS]
    if unknown or "email" not in header or len(set(header)) != len(header):
        raise ImportProblem(
            f"{path}:1: the columns must be {', '.join(COLUMNS)} (email required, each once); "
            f"found {', '.join(header) or 'none'}"
        )
    zones: dict[str, bool] = {}
    known = set(config.symptoms) | set(config.red_flags)
    seen: dict[str, int] = {}
    line = 1
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: report the first
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BadRow(start, f"not valid CSV: {exc}")
            return
        line = start
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield BadRow(line, f"has {len(values)} fields; the header has {len(header)}")
            continue
        fields = dict(zip(header, values, strict=True))
        yield _check(line, fields, config, consent, known, zones, seen)


def _check(
    line: int,
    fields: dict[str, str],
    config: Config,
    default_consent: str | None,
    known: set[str],
    zones: dict[str, bool],
    seen: dict[str, int],
) -> Row | BadRow:
    raw = fields.get("email", "").strip()
    if not raw:
        return BadRow(line, "no email address")
    try:
        email = fast_normalize(raw)
    except InvalidSubscriber:
        return BadRow(line, f"{raw!r} is not a valid email address")
    if email in seen:
        return BadRow(line, f"{email} is already on line {seen[email]}")
    zone = fields.get("timezone", "").strip() or config.clinic.timezone
    if zone not in zones:
        zones[zone] = valid_timezone(zone)
    if not zones[zone]:
        return BadRow(line, f"unknown time zone {zone!r} (use a name like America/Chicago)")
    keys = frozenset(k.strip() for k in fields.get("symptoms", "").split(";") if k.strip())
    if keys - known:
        return BadRow(line, f"unknown symptom key(s): {', '.join(sorted(keys - known))}")
    consent = (fields.get("consent", "").strip() or default_consent or "").strip()
    if not consent:
        return BadRow(line, "no consent basis (add a consent column or --consent)")
    if len(consent) > MAX_CONSENT:
        return BadRow(line, f"the consent basis is over {MAX_CONSENT} characters")
    seen[email] = line
    return Row(line, email, clean_name(fields.get("first_name")), zone, keys, consent)


def import_csv(
    engine: Engine,
    config: Config,
    path: Path,
    *,
    now: datetime,
    consent: str | None = None,
    confirmed: bool = False,
    dry_run: bool = False,
    actor: str = "cli import",
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the file; see the module docstring. `progress` gets rows done so far."""
    report = ImportReport()
    plans = _PlanCache(config, now)
    pending: list[Row] = []
    with Session(engine) as session:
        for item in read_rows(path, config, consent):
            report.rows += 1
            if isinstance(item, BadRow):
                report.bad.append(item)
            else:
                pending.append(item)
            if len(pending) >= CHUNK:
                _write(session, pending, report, plans, now, confirmed, dry_run, actor)
                pending = []
                if progress:
                    progress(report.rows)
        if pending:
            _write(session, pending, report, plans, now, confirmed, dry_run, actor)
        if progress:
            progress(report.rows)
        if dry_run:
            session.rollback()
    return report


def _write(
    session: Session,
    rows: list[Row],
    report: ImportReport,
    plans: _PlanCache,
    now: datetime,
    confirmed: bool,
    dry_run: bool,
    actor: str,
) -> None:
    emails = [r.email for r in rows]
    existing = set(session.scalars(select(Subscriber.email).where(Subscriber.email.in_(emails))))
    hashes = {r.email: address_hash(r.email) for r in rows}
    blocked = set(
        session.scalars(
            select(Suppression.address_hash).where(Suppression.address_hash.in_(hashes.values()))
        )
    )
    new = []
    for r in rows:
        if r.email in existing:
            report.existing += 1
        elif hashes[r.email] in blocked:
            report.suppressed += 1
        else:
            new.append(r)
    report.imported += len(new)
    if dry_run or not new:
        return
    status = ACTIVE if confirmed else PENDING
    session.execute(
        _core(Subscriber),
        [
            {
                "public_id": secrets.token_hex(16),
                "email": r.email,
                "first_name": r.first_name,
                "timezone": r.timezone,
                "status": status,
                "created_at": now,
                "confirmed_at": now if confirmed else None,
                "source": "import",
                "consent_basis": r.consent,
                "soft_bounces": 0,
            }
            for r in new
        ],
    )
    ids: dict[str, int] = {
        email: sub_id
        for email, sub_id in session.execute(
            select(Subscriber.email, Subscriber.id).where(
                Subscriber.email.in_([r.email for r in new])
            )
        )
    }
    symptoms = [{"subscriber_id": ids[r.email], "key": k} for r in new for k in sorted(r.symptoms)]
    if symptoms:
        session.execute(_core(Symptom), symptoms)
    if confirmed:
        enrollments = [e for r in new for e in plans.enrollments(ids[r.email], r)]
        if enrollments:
            session.execute(_core(Enrollment), enrollments)
    else:
        # the confirmation email is rendered when it is sent (drip serve / drip run),
        # within the hourly cap; the person stays pending until they click it
        session.execute(
            _core(QueuedMail),
            [
                {
                    "kind": "confirm",
                    "subscriber_id": ids[r.email],
                    "recipient": r.email,
                    "mailbox_hash": mailbox_hash(r.email),
                    "sender": None,
                    "data": None,
                    "status": QUEUED,
                    "priority": IMPORT_PRIORITY,
                    "ref": new_ref(),
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for r in new
            ],
        )
    session.execute(
        _core(AuditEntry),
        [
            {
                "at": now,
                "actor": actor,
                "action": "subscriber.imported",
                "subscriber_id": ids[r.email],
                "detail": _json({"status": status, "consent": r.consent, "line": r.line}),
            }
            for r in new
        ],
    )
    session.commit()


def _core(model: Any) -> Any:
    """A Core INSERT for the model's table: bulk rows without the ORM's bookkeeping."""
    return insert(model.__table__)


def _json(value: dict[str, Any]) -> str:
    import json

    return json.dumps(value, sort_keys=True)


class _PlanCache:
    """A new subscriber's first step depends only on the campaign and the time zone,
    so it is planned once per (campaign, zone), not once per row."""

    def __init__(self, config: Config, now: datetime):
        self.config, self.now = config, now
        self._plans: dict[tuple[str, str], dict[str, Any]] = {}

    def enrollments(self, subscriber_id: int, row: Row) -> list[dict[str, Any]]:
        found = []
        for campaign in self.config.campaigns:
            if not campaign.audience.matches(row.symptoms):
                continue
            key = (campaign.key, row.timezone)
            if key not in self._plans:
                plan = plan_next(
                    campaign,
                    {},
                    self.now,
                    ZoneInfo(row.timezone),
                    self.config.clinic.send_window,
                    self.config.clinic.min_gap,
                )
                probe = Enrollment(campaign_key=campaign.key, started_at=self.now, state=ENROLLED)
                apply_plan(probe, plan)
                self._plans[key] = {
                    "state": probe.state,
                    "next_step_key": probe.next_step_key,
                    "next_due_at": probe.next_due_at,
                }
            found.append(
                {
                    "subscriber_id": subscriber_id,
                    "campaign_key": campaign.key,
                    "started_at": self.now,
                    **self._plans[key],
                }
            )
        return found
