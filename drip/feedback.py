"""What drip does with a bounce or complaint that comes back after sending.

Reports come from returned mail (drip/bounces.py) or providers' webhooks
(drip/web/hooks.py); both become `Report`s, and `apply` makes the one decision
for each, recorded in the audit log:

- hard (a 5.x.x failure, not 5.7.x): the subscriber is marked bounced and the
  address suppressed.
- soft (a 4.x.x failure, a full mailbox x.2.2, or a failure without a status
  code): counted in Subscriber.soft_bounces; `[clinic] soft_bounce_limit` in a
  row become a bounce. A delivery sent between two soft bounces that did not
  bounce itself starts the count again.
- policy (5.7.x: authentication, reputation, content): the sender's problem, so
  a warning and an audit entry; the patient is kept.
- complaint (ARF abuse or fraud, a provider's complaint): marked complained,
  unsubscribed, consent withdrawn, suppressed.
- delayed (the relay is still trying) and anything else: audited only.

Nothing here ever makes a subscriber active again. A report seen before (same
delivery, same kind) changes nothing, so reprocessing a mailbox is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from . import audit, enrollment
from .config import Config
from .models import (
    ACTIVE,
    BOUNCED,
    COMPLAINED,
    PENDING,
    AuditEntry,
    Delivery,
    Subscriber,
)
from .states import DeliveryStatus
from .subscribers import InvalidSubscriber, find, suppress

HARD, SOFT, DELAYED, POLICY, COMPLAINT, IGNORED = (
    "hard",
    "soft",
    "delayed",
    "policy",
    "complaint",
    "ignored",
)
KINDS = (HARD, SOFT, DELAYED, POLICY, COMPLAINT, IGNORED)
# one audit action per kind of report; stats count these
ACTIONS = {
    HARD: "bounce.hard",
    SOFT: "bounce.soft",
    DELAYED: "bounce.delayed",
    POLICY: "bounce.policy",
    COMPLAINT: "complaint",
    IGNORED: "bounce.ignored",
}
UNMATCHED = "bounce.unmatched"


@dataclass(frozen=True)
class Report:
    """One recipient's fate in one report, whatever it came in."""

    kind: str
    source: str  # dsn, arf, mail (other bounce formats), ses, mailgun, generic
    report_id: str  # the report's own id: its Message-ID, SES feedbackId, ...
    email: str | None = None  # the recipient the report names
    refs: tuple[str, ...] = ()  # drip refs found in it (VERP, X-Drip-Ref, Message-ID)
    status: str = ""  # enhanced status code, e.g. 5.1.1
    detail: str = ""  # diagnostic text or feedback type


@dataclass(frozen=True)
class Outcome:
    action: str  # bounced, soft, complained, policy, delayed, ignored, unmatched, duplicate
    line: str  # one line for the operator
    warning: bool = False


def classify(action: str, status: str) -> str:
    """An RFC 3464 per-recipient Action and Status -> a Report kind."""
    action = action.strip().lower()
    if action.startswith("delayed"):
        return DELAYED
    if not action.startswith(("failed", "error")):  # delivered, relayed, expanded
        return IGNORED
    if status.startswith("5.7."):
        return POLICY
    if status.startswith("5.") and not status.startswith("5.2.2"):
        return HARD
    return SOFT  # 4.x.x, a full mailbox, or no status to be sure of


def classify_status(status: str) -> str:
    """A bare status code (webhooks without an Action field) -> a Report kind."""
    return classify("failed", status) if status[:1] in ("4", "5") else SOFT


def apply(session: Session, config: Config, report: Report, now: datetime, actor: str) -> Outcome:
    """Make and record the decision for one report (the caller commits)."""
    sub, delivery, matched_by = _match(session, report)
    who = report.email or "unknown recipient"
    if sub is None:
        key = f"{report.kind}:{report.report_id}:{report.email or ''}"
        if _seen(session, None, key):
            return Outcome("duplicate", f"already processed ({report.kind}, unmatched {who})")
        audit.record(
            session, now, actor, UNMATCHED, None, **_detail(report, None, key), reported=who
        )
        return Outcome(
            "unmatched",
            f"{report.kind} for {who}: no subscriber or delivery matches "
            f"(refs: {', '.join(report.refs) or 'none'}); recorded, nothing changed",
        )
    key = f"{report.kind}:{delivery.ref if delivery else report.report_id}"
    if _seen(session, sub.id, key):
        return Outcome("duplicate", f"already processed ({report.kind} for {sub.email})")
    detail = _detail(report, delivery, key) | {"matched_by": matched_by}
    where = f" ({delivery.campaign_key}/{delivery.step_key})" if delivery else ""
    code = f" {report.status}" if report.status else ""

    if report.kind == COMPLAINT:
        audit.record(session, now, actor, ACTIONS[COMPLAINT], sub.id, **detail)
        _complained(session, config, sub, now, actor, report)
        return Outcome(
            "complained", f"complaint from {sub.email}{where}: unsubscribed and suppressed"
        )
    if report.kind == HARD:
        audit.record(session, now, actor, ACTIONS[HARD], sub.id, **detail)
        _bounced(session, config, sub, now, actor, "hard-bounce", report)
        return Outcome("bounced", f"hard bounce{code} for {sub.email}{where}: suppressed")
    if report.kind == SOFT:
        count = _soft_count(session, sub, delivery) + 1
        limit = config.clinic.soft_bounce_limit
        sub.soft_bounces = count
        audit.record(session, now, actor, ACTIONS[SOFT], sub.id, **detail, count=count, limit=limit)
        if count >= limit:
            _bounced(session, config, sub, now, actor, "soft-bounce-limit", report)
            return Outcome(
                "bounced",
                f"soft bounce{code} for {sub.email}{where}: {count} in a row, "
                "now treated as bounced and suppressed",
            )
        return Outcome("soft", f"soft bounce{code} for {sub.email}{where}: {count} of {limit}")
    if report.kind == POLICY:
        audit.record(session, now, actor, ACTIONS[POLICY], sub.id, **detail)
        return Outcome(
            "policy",
            f"policy rejection{code} for {sub.email}{where}: kept subscribed; the receiving "
            f"server refused drip's mail, check DKIM/SPF/DMARC and content ({report.detail[:120]})",
            warning=True,
        )
    audit.record(session, now, actor, ACTIONS[report.kind], sub.id, **detail)
    if report.kind == DELAYED:
        return Outcome("delayed", f"delayed{code} for {sub.email}{where}: the relay keeps trying")
    return Outcome(
        "ignored", f"{report.source} report for {sub.email}: {report.detail or 'no action'}"
    )


def _detail(report: Report, delivery: Delivery | None, key: str) -> dict[str, object]:
    detail: dict[str, object] = {
        "key": key,
        "source": report.source,
        "report": report.report_id[:200],
        "status": report.status,
        "diagnostic": report.detail[:300],
    }
    if delivery is not None:
        detail |= {
            "ref": delivery.ref,
            "campaign": delivery.campaign_key,
            "step": delivery.step_key,
            "sent_at": delivery.sent_at.isoformat() if delivery.sent_at else None,
        }
    return detail


def _match(session: Session, report: Report) -> tuple[Subscriber | None, Delivery | None, str]:
    """By drip's own ref first (exact), else by the address the report names."""
    for ref in report.refs:
        delivery = session.scalar(select(Delivery).where(Delivery.ref == ref))
        if delivery is not None:
            return session.get(Subscriber, delivery.subscriber_id), delivery, "ref"
    if report.email:
        try:
            sub = find(session, report.email)
        except InvalidSubscriber:
            sub = None
        if sub is not None:
            return sub, None, "address"
    return None, None, ""


def _seen(session: Session, subscriber_id: int | None, key: str) -> bool:
    query = select(AuditEntry.id).where(
        AuditEntry.detail.contains(json.dumps({"key": key})[1:-1], autoescape=True)
    )
    query = query.where(
        AuditEntry.subscriber_id == subscriber_id
        if subscriber_id is not None
        else AuditEntry.subscriber_id.is_(None)
    )
    return session.scalar(query.limit(1)) is not None


def _soft_count(session: Session, sub: Subscriber, delivery: Delivery | None) -> int:
    """Soft bounces in a row so far: 0 again if a delivery between went through."""
    if delivery is None or delivery.sent_at is None:
        return sub.soft_bounces or 0
    last = session.scalar(
        select(AuditEntry)
        .where(AuditEntry.subscriber_id == sub.id, AuditEntry.action == ACTIONS[SOFT])
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    previous = json.loads(last.detail).get("sent_at") if last is not None else None
    if not previous:
        return sub.soft_bounces or 0
    since = datetime.fromisoformat(previous)
    between = session.scalar(sent_between(sub.id, since, delivery.sent_at))
    return 0 if between is not None else (sub.soft_bounces or 0)


def sent_between(subscriber_id: int, since: datetime, until: datetime) -> Select[int]:
    """One email this patient was sent between two moments, if any (by the index on
    subscriber_id: tests/test_due_query.py checks the plan)."""
    return (
        select(Delivery.id)
        .where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at > since,
            Delivery.sent_at < until,
        )
        .limit(1)
    )


def _bounced(
    session: Session,
    config: Config,
    sub: Subscriber,
    now: datetime,
    actor: str,
    reason: str,
    report: Report,
) -> None:
    suppress(session, sub.email, reason, now)
    if sub.status in (ACTIVE, PENDING):  # an unsubscribed or complained status says more
        previous, sub.status = sub.status, BOUNCED
        audit.record(
            session,
            now,
            actor,
            "subscriber.bounced",
            sub.id,
            reason=reason,
            was=previous,
            status=report.status,
            source=report.source,
        )
    enrollment.sync_subscriber(session, config, sub, now)


def _complained(
    session: Session, config: Config, sub: Subscriber, now: datetime, actor: str, report: Report
) -> None:
    suppress(session, sub.email, "complaint", now)
    if sub.status != COMPLAINED:
        previous, sub.status = sub.status, COMPLAINED
        sub.unsubscribed_at = sub.unsubscribed_at or now
        sub.withdrawn_at = sub.withdrawn_at or now  # consent withdrawn
        audit.record(
            session,
            now,
            actor,
            "subscriber.complained",
            sub.id,
            was=previous,
            source=report.source,
            feedback=report.detail[:100],
        )
    enrollment.sync_subscriber(session, config, sub, now)
