"""Bounce and complaint rates per campaign step, for `drip stats`.

- sent: deliveries the server accepted.
- bounced: refused at RCPT with a 5xx that is not 5.7.x (the Sender's own
  hard bounces), plus hard bounces that came back later (audit `bounce.hard`).
- complained: complaints matched to a delivery (audit `complaint`).
Bounce rate = bounced / (sent + refused at RCPT); complaint rate = complained / sent.
Gmail treats a spam rate of 0.3% as trouble; drip warns from 0.1%.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, select
from sqlalchemy.orm import Session

from .feedback import ACTIONS, COMPLAINT, HARD
from .models import AuditEntry, Delivery
from .states import DeliveryStatus

COMPLAINT_WARNING = 0.001  # 0.1%


@dataclass
class Rates:
    sent: int = 0
    refused: int = 0  # hard-bounced at RCPT, never sent
    bounced_later: int = 0
    complained: int = 0

    @property
    def bounced(self) -> int:
        return self.refused + self.bounced_later

    @property
    def bounce_rate(self) -> float:
        attempted = self.sent + self.refused
        return self.bounced / attempted if attempted else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.sent if self.sent else 0.0

    def add(self, other: Rates) -> None:
        self.sent += other.sent
        self.refused += other.refused
        self.bounced_later += other.bounced_later
        self.complained += other.complained


def refused_at_rcpt() -> ColumnElement[bool]:
    """Deliveries the server refused at RCPT with a hard (non-5.7.x) 5xx: bounces."""
    return and_(
        Delivery.status == DeliveryStatus.FAILED,
        Delivery.error.like("RCPT TO refused: 5%"),
        not_(Delivery.error.like("% 5.7.%")),
    )


def step_rates(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Rates]:
    """`campaign/step` -> Rates, for every step with a delivery or a report.

    With `since`/`until`, only what happened in [since, until): emails sent, refused
    or reported (bounce, complaint) in that period (`drip report` uses this).
    """
    table: dict[str, Rates] = {}

    def period(column: Any) -> list[ColumnElement[bool]]:
        return [
            *([column >= since] if since is not None else []),
            *([column < until] if until is not None else []),
        ]

    def row(campaign: str, step: str) -> Rates:
        return table.setdefault(f"{campaign}/{step}", Rates())

    for campaign, step, count in session.execute(
        select(Delivery.campaign_key, Delivery.step_key, func.count())
        .where(Delivery.status == DeliveryStatus.SENT, *period(Delivery.sent_at))
        .group_by(Delivery.campaign_key, Delivery.step_key)
    ):
        row(campaign, step).sent = count
    for campaign, step, count in session.execute(
        select(Delivery.campaign_key, Delivery.step_key, func.count())
        .where(refused_at_rcpt(), *period(Delivery.updated_at))
        .group_by(Delivery.campaign_key, Delivery.step_key)
    ):
        row(campaign, step).refused = count
    for action, detail in session.execute(
        select(AuditEntry.action, AuditEntry.detail).where(
            AuditEntry.action.in_((ACTIONS[HARD], ACTIONS[COMPLAINT])), *period(AuditEntry.at)
        )
    ):
        facts = json.loads(detail)
        if not facts.get("campaign"):
            continue  # not matched to a delivery (e.g. a confirmation email)
        rates = row(facts["campaign"], facts.get("step", "?"))
        if action == ACTIONS[HARD]:
            rates.bounced_later += 1
        else:
            rates.complained += 1
    return table


def total(table: dict[str, Rates]) -> Rates:
    result = Rates()
    for rates in table.values():
        result.add(rates)
    return result


def failure_reasons(session: Session, most: int = 10) -> list[tuple[str, int]]:
    """The commonest reasons emails failed, addresses blanked so alike ones group."""
    import re

    counts: dict[str, int] = {}
    for error in session.scalars(
        select(Delivery.error).where(
            Delivery.status == DeliveryStatus.FAILED, Delivery.error.is_not(None)
        )
    ):
        if error is None:  # excluded by the query; for the type checker
            continue
        reason = re.sub(r"<[^>]*>|\S+@\S+", "<>", error.splitlines()[0])[:120]
        counts[reason] = counts.get(reason, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:most]


def rates_json(table: dict[str, Rates]) -> dict[str, dict[str, float | int]]:
    """The rates per step and over all steps, for `drip stats --json`."""
    return {
        key: {
            "sent": r.sent,
            "bounced": r.bounced,
            "complained": r.complained,
            "bounce_rate": round(r.bounce_rate, 6),
            "complaint_rate": round(r.complaint_rate, 6),
        }
        for key, r in {**table, "all": total(table)}.items()
    }
