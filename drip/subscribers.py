"""Subscriber records: add, find, suppress. Addresses are normalized once, here."""

from __future__ import annotations

import difflib
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .config import Config, valid_timezone
from .models import ACTIVE, PENDING, Delivery, Enrollment, Subscriber, Suppression, Symptom

MAX_NAME = 100


class InvalidSubscriber(ValueError):
    """Input that cannot become a subscriber; the message is safe to show a person."""


def normalize_email(raw: str) -> str:
    """Syntax-check and normalize (Unicode NFC, IDNA, lower case) with email-validator."""
    # imported here: its rules take a while to load, and cron's `drip send` never needs them
    from email_validator import EmailNotValidError, validate_email

    if "\r" in raw or "\n" in raw:
        raise InvalidSubscriber("That email address is not valid.")
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidSubscriber(f"That email address is not valid: {exc}") from None
    # one person, one row: providers treat local parts case-insensitively in practice
    return result.normalized.lower()


def clean_name(raw: str | None) -> str | None:
    """A first name safe for headers and markup: one line, no control characters.

    HTML in it is kept as text; Jinja autoescape shows it literally in emails.
    """
    if not raw:
        return None
    name = "".join(ch if ch.isprintable() else " " for ch in raw)
    name = " ".join(name.split())[:MAX_NAME]
    return name or None


def address_hash(email: str) -> str:
    """Stable across secret rotation and subscriber erasure (unsalted by design)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def is_suppressed(session: Session, email: str) -> bool:
    return session.get(Suppression, address_hash(email)) is not None


def suppress(session: Session, email: str, reason: str, now: datetime) -> None:
    key = address_hash(email)
    if session.get(Suppression, key) is None:
        session.add(Suppression(address_hash=key, reason=reason, created_at=now))


def check_symptoms(config: Config, keys: Iterable[str]) -> set[str]:
    chosen = {k.strip() for k in keys if k.strip()}
    known = set(config.symptoms) | set(config.red_flags)
    unknown = sorted(chosen - known)
    if unknown:
        close = {k: difflib.get_close_matches(k, sorted(known), n=1, cutoff=0.6) for k in unknown}
        hints = [f"{k!r} -> {m[0]!r}" for k, m in close.items() if m]
        hint = f"; did you mean {', '.join(hints)}?" if hints else ""
        raise InvalidSubscriber(
            f"unknown symptom key{'s' if len(unknown) != 1 else ''}: {', '.join(unknown)}"
            f"{hint}; known: {', '.join(sorted(known))}"
        )
    return chosen


def listing(session: Session, status: str | None = None) -> list[Subscriber]:
    """Every subscriber (or those with `status`), oldest first."""
    query = select(Subscriber).order_by(Subscriber.id)
    if status:
        query = query.where(Subscriber.status == status)
    return list(session.scalars(query))


def find(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email == normalize_email(email)))


def create(
    session: Session,
    config: Config,
    *,
    email: str,
    symptoms: Iterable[str],
    now: datetime,
    first_name: str | None = None,
    timezone: str | None = None,
    confirmed: bool = False,
    source: str = "cli",
    actor: str = "cli",
) -> Subscriber:
    """A new subscriber, pending until confirmed (or active with `confirmed`)."""
    address = normalize_email(email)
    tz = timezone or config.clinic.timezone
    if not valid_timezone(tz):
        raise InvalidSubscriber(f"unknown time zone {tz!r}")
    if find(session, address) is not None:
        raise InvalidSubscriber(f"{address} is already a subscriber")
    sub = Subscriber(
        public_id=secrets.token_hex(16),
        email=address,
        first_name=clean_name(first_name),
        timezone=tz,
        status=ACTIVE if confirmed else PENDING,
        created_at=now,
        confirmed_at=now if confirmed else None,
        source=source,
        soft_bounces=0,
    )
    sub.symptoms = [Symptom(key=k) for k in sorted(check_symptoms(config, symptoms))]
    session.add(sub)
    session.flush()
    audit.record(
        session, now, actor, "subscriber.created", sub.id, status=sub.status, source=source
    )
    return sub


# what `drip subscribers show` lists, in this order (the consent record included)
PROFILE_FIELDS = (
    "email",
    "first_name",
    "status",
    "timezone",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "paused_until",
    "source",
    "consent_text_version",
    "consent_at",
    "consent_ip",
    "consent_user_agent",
    "confirm_ip",
    "withdrawn_at",
)


@dataclass(frozen=True)
class Profile:
    """Everything drip holds about one subscriber (GDPR Art. 15: the right of access)."""

    subscriber: Subscriber
    enrollments: list[Enrollment]
    deliveries: list[Delivery]

    def fields(self) -> list[tuple[str, object]]:
        """(name, value) pairs; None where drip holds nothing."""
        return [(name, getattr(self.subscriber, name)) for name in PROFILE_FIELDS]


def profile(session: Session, sub: Subscriber, now: datetime, actor: str = "cli") -> Profile:
    """Read everything about `sub`; the reading itself is audited (not committed here)."""
    enrollments = list(
        session.scalars(select(Enrollment).where(Enrollment.subscriber_id == sub.id))
    )
    deliveries = list(
        session.scalars(
            select(Delivery).where(Delivery.subscriber_id == sub.id).order_by(Delivery.id)
        )
    )
    audit.record(session, now, actor, "subscriber.viewed", sub.id)
    return Profile(sub, enrollments, deliveries)
