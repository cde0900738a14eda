"""What each page does to the database, apart from HTTP so it can be tested alone.

Every function works inside the caller's session and leaves the commit to it, so
a page's change and its audit entry land together or not at all.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from .. import audit, enrollment, rights, subscribers
from ..config import Campaign, Config
from ..enrollment import OPTED_OUT
from ..models import (
    ACTIVE,
    LEFT,
    PENDING,
    UNSUBSCRIBED,
    Enrollment,
    PendingChange,
    Subscriber,
    Symptom,
)
from .forms import SignupForm

MAX_USER_AGENT = 512

# what start_signup asks the caller to email
CONFIRM_MAIL, ALREADY_MAIL, NO_MAIL = "confirm", "already", ""


@dataclass(frozen=True)
class Consent:
    """How this consent was given: the GDPR Art. 7 record."""

    ip: str
    user_agent: str
    version: str
    text: str


def by_public_id(session: Session, public_id: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))


def set_answers(sub: Subscriber, keys: set[str]) -> None:
    """Replace the stored symptom keys, touching only rows that change."""
    have = {s.key: s for s in sub.symptoms}
    for key, row in have.items():
        if key not in keys:
            sub.symptoms.remove(row)
    for key in sorted(keys - set(have)):
        sub.symptoms.append(Symptom(key=key))


def record_consent(session: Session, sub: Subscriber, consent: Consent, now: datetime) -> None:
    sub.consent_text_version = consent.version
    sub.consent_at = now
    sub.consent_ip = consent.ip[:64]
    sub.consent_user_agent = consent.user_agent[:MAX_USER_AGENT] or None
    audit.record(
        session, now, "web", "consent.given", sub.id, version=consent.version, text=consent.text
    )


@dataclass(frozen=True)
class Signup:
    """What start_signup decided: whom to email, which email, and for which change."""

    sub: Subscriber | None
    mail: str
    change: str | None = None  # a pending change's nonce, carried by the confirm link


def start_signup(
    session: Session, config: Config, form: SignupForm, consent: Consent, now: datetime
) -> Signup:
    """Store a signup; say which email, if any, to send.

    A new address becomes a pending subscriber with these answers. For an address
    that exists but is not active (pending, unsubscribed), the answers, name, time
    zone and consent wait apart as a PendingChange, and the confirmation link
    names that change: stored answers change only when the owner of the address
    confirms. An active address is left untouched and gets a link to its
    preferences. A bounced, complained or suppressed address gets nothing. The
    page shown is the same in every case.
    """
    assert form.ok
    sub = subscribers.find(session, form.clean_email)
    if not rights.signup_allowed(session, form.clean_email):
        audit.record(session, now, "web", "signup.refused", sub.id if sub else None)
        return Signup(sub, NO_MAIL)
    if sub is None:
        sub = subscribers.create(
            session,
            config,
            email=form.clean_email,
            symptoms=form.answers,
            now=now,
            first_name=form.clean_name,
            timezone=form.timezone,
            source="web",
            actor="web",
        )
        record_consent(session, sub, consent, now)
        return Signup(sub, CONFIRM_MAIL)
    if sub.status == ACTIVE:
        audit.record(session, now, "web", "signup.already_active", sub.id)
        return Signup(sub, ALREADY_MAIL)
    if sub.status not in (PENDING, UNSUBSCRIBED):
        audit.record(session, now, "web", "signup.refused", sub.id, status=sub.status)
        return Signup(sub, NO_MAIL)
    change = PendingChange(
        subscriber_id=sub.id,
        nonce=secrets.token_hex(16),
        first_name=form.clean_name,
        timezone=form.timezone,
        symptoms=",".join(sorted(form.answers)),
        consent_text_version=consent.version,
        consent_text=consent.text,
        consent_ip=consent.ip[:64],
        consent_user_agent=consent.user_agent[:MAX_USER_AGENT] or None,
        created_at=now,
    )
    session.add(change)
    audit.record(session, now, "web", "signup.change_pending", sub.id, status=sub.status)
    return Signup(sub, CONFIRM_MAIL, change.nonce)


def confirm_payload(public_id: str, change: str | None) -> str:
    """What a confirmation token carries: the subscriber, and the change if any."""
    return f"{public_id}:{change}" if change else public_id


def split_payload(payload: str) -> tuple[str, str | None]:
    public_id, _, change = payload.partition(":")
    return public_id, change or None


def pending_change(session: Session, sub: Subscriber, nonce: str | None) -> PendingChange | None:
    if nonce is None:
        return None
    return session.scalar(
        select(PendingChange).where(
            PendingChange.subscriber_id == sub.id, PendingChange.nonce == nonce
        )
    )


def _apply_change(session: Session, sub: Subscriber, change: PendingChange) -> None:
    """The owner confirmed: the waiting answers and consent become the stored ones."""
    sub.first_name = change.first_name
    sub.timezone = change.timezone
    set_answers(sub, {k for k in change.symptoms.split(",") if k})
    sub.consent_text_version = change.consent_text_version
    sub.consent_at = change.created_at
    sub.consent_ip = change.consent_ip
    sub.consent_user_agent = change.consent_user_agent
    audit.record(
        session,
        change.created_at,
        "web",
        "consent.given",
        sub.id,
        version=change.consent_text_version,
        text=change.consent_text,
    )
    # one confirmation settles every waiting change for this address
    session.execute(delete(PendingChange).where(PendingChange.subscriber_id == sub.id))
    session.flush()


def claim_mail_slot(session: Session, sub: Subscriber, now: datetime, interval: timedelta) -> bool:
    """At most one confirmation email per address per `interval`, across processes.

    An atomic UPDATE, like the Sender's claim: of two concurrent signups for one
    address only one gets the slot. Commit before sending.
    """
    result = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == sub.id,
            or_(
                Subscriber.last_confirmation_sent_at.is_(None),
                Subscriber.last_confirmation_sent_at <= now - interval,
            ),
        )
        .values(last_confirmation_sent_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_mail_slot(session: Session, sub: Subscriber, previous: datetime | None) -> None:
    """The email did not go: let the person try again at once."""
    sub.last_confirmation_sent_at = previous


def confirm(
    session: Session,
    config: Config,
    public_id: str,
    now: datetime,
    ip: str,
    change: str | None = None,
) -> tuple[str, Subscriber | None]:
    """'confirmed' (and enrolled), 'already' (active) or 'invalid'.

    Without `change`, only a pending signup can be confirmed, so a link used twice,
    or an old link clicked after unsubscribing, changes nothing. With `change`, the
    waiting answers of that signup are applied first; a change already applied or
    purged is 'invalid'.
    """
    sub = by_public_id(session, public_id)
    if sub is None:
        return "invalid", None
    waiting = pending_change(session, sub, change)
    if change is not None and waiting is None:
        return ("already", sub) if sub.status == ACTIVE else ("invalid", sub)
    if waiting is not None and sub.status in (ACTIVE, PENDING, UNSUBSCRIBED):
        if sub.status == UNSUBSCRIBED:
            audit.record(session, now, "web", "signup.again", sub.id)
        _apply_change(session, sub, waiting)
        if sub.status == ACTIVE:
            audit.record(session, now, "web", "subscriber.answers_changed", sub.id)
            enrollment.sync_subscriber(session, config, sub, now)
            return "already", sub
        sub.status = PENDING
    if sub.status == ACTIVE:
        return "already", sub
    if sub.status != PENDING:
        return "invalid", sub
    sub.status = ACTIVE
    rights.lift_on_new_consent(session, sub.email)  # erased once, back by their own choice
    sub.confirmed_at, sub.confirm_ip = now, ip[:64]
    sub.unsubscribed_at = sub.withdrawn_at = sub.paused_until = None
    audit.record(session, now, "web", "subscriber.confirmed", sub.id)
    enrollment.sync_subscriber(session, config, sub, now)
    return "confirmed", sub


def unsubscribe(
    session: Session, config: Config, public_id: str, now: datetime, how: str
) -> tuple[str, Subscriber | None]:
    """'done', 'already', or 'gone' (no such subscriber any more). Idempotent."""
    sub = by_public_id(session, public_id)
    if sub is None:
        return "gone", None
    if sub.status == UNSUBSCRIBED or (sub.status not in (ACTIVE, PENDING) and sub.withdrawn_at):
        return "already", sub
    if sub.status in (ACTIVE, PENDING):
        sub.status = UNSUBSCRIBED
        sub.unsubscribed_at = now
    sub.withdrawn_at = now  # consent withdrawn (GDPR Art. 7(3))
    audit.record(session, now, "web", "subscriber.unsubscribed", sub.id, how=how)
    enrollment.sync_subscriber(session, config, sub, now)
    return "done", sub


def update_topics(
    session: Session, config: Config, sub: Subscriber, keys: set[str], timezone: str, now: datetime
) -> set[str]:
    """New answers and time zone; re-applies the audience rules. Returns new red flags."""
    before = sub.symptom_keys
    set_answers(sub, keys)
    sub.timezone = timezone
    session.flush()
    audit.record(session, now, "web", "subscriber.answers_changed", sub.id)
    enrollment.sync_subscriber(session, config, sub, now)
    return (keys - before) & set(config.red_flags)


def pause(
    session: Session, config: Config, sub: Subscriber, weeks: int | None, now: datetime
) -> None:
    """Pause for `weeks` (None resumes now). The Sender skips paused subscribers."""
    sub.paused_until = now + timedelta(weeks=weeks) if weeks else None
    action = "subscriber.paused" if weeks else "subscriber.resumed"
    audit.record(session, now, "web", action, sub.id, weeks=weeks)
    enrollment.sync_subscriber(session, config, sub, now)


def campaign_states(
    session: Session, config: Config, sub: Subscriber
) -> list[tuple[Campaign, str]]:
    """The drip campaigns this subscriber is or was in, with where they stand."""
    found = {
        e.campaign_key: e.state
        for e in session.scalars(select(Enrollment).where(Enrollment.subscriber_id == sub.id))
    }
    rows: list[tuple[Campaign, str]] = []
    for campaign in config.drip_campaigns():
        state = found.get(campaign.key)
        if state is None or (state == LEFT and not campaign.audience.matches(sub.symptom_keys)):
            continue
        rows.append((campaign, state))
    return rows


def _enrollment(session: Session, sub: Subscriber, key: str) -> Enrollment | None:
    return session.scalar(
        select(Enrollment).where(Enrollment.subscriber_id == sub.id, Enrollment.campaign_key == key)
    )


def leave_campaign(
    session: Session, config: Config, sub: Subscriber, key: str, now: datetime
) -> bool:
    row = _enrollment(session, sub, key)
    if row is None:
        return False
    row.state, row.next_step_key, row.next_due_at = OPTED_OUT, None, None
    audit.record(session, now, "web", "campaign.left", sub.id, campaign=key)
    return True


def rejoin_campaign(
    session: Session, config: Config, sub: Subscriber, key: str, now: datetime
) -> bool:
    row = _enrollment(session, sub, key)
    if row is None or row.state != OPTED_OUT:
        return False
    row.state = LEFT  # sync_subscriber re-enrolls from here, resuming where they were
    session.flush()
    audit.record(session, now, "web", "campaign.rejoined", sub.id, campaign=key)
    enrollment.sync_subscriber(session, config, sub, now)
    return True
