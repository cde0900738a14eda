"""The plain numbers of `drip stats`: subscribers by status, deliveries by step and
status, bounce and complaint rates, and the commonest failure reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .campaigns import Config
from .models import Delivery, Subscriber
from .rates import Rates, failure_reasons, rates_json, step_rates
from .states import DeliveryStatus

# the columns of the step table, in the order a delivery moves through them
STATUS_COLUMNS = (
    DeliveryStatus.SENT,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.FAILED,
    DeliveryStatus.IN_DOUBT,
    DeliveryStatus.CLAIMED,
)


@dataclass(frozen=True)
class Stats:
    subscribers: dict[str, int]  # status -> how many
    steps: dict[str, dict[str, int]]  # "campaign/step" -> status -> how many
    rates: dict[str, Rates]  # "campaign/step" -> bounces and complaints
    failure_reasons: list[tuple[str, int]]
    order: dict[str, int]  # "campaign/step" -> its place in campaigns.toml

    def ordered_steps(self) -> list[str]:
        """Steps in campaigns.toml order; steps no longer there come last."""
        return sorted(self.steps, key=lambda k: (self.order.get(k, len(self.order)), k))

    def as_json(self) -> dict[str, Any]:
        return {
            "subscribers": self.subscribers,
            "steps": self.steps,
            "rates": rates_json(self.rates),
            "failure_reasons": dict(self.failure_reasons),
        }


def gather(session: Session, config: Config) -> Stats:
    people = {
        str(status): count
        for status, count in session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        )
    }
    steps: dict[str, dict[str, int]] = {}
    for campaign, step, status, count in session.execute(
        select(Delivery.campaign_key, Delivery.step_key, Delivery.status, func.count()).group_by(
            Delivery.campaign_key, Delivery.step_key, Delivery.status
        )
    ):
        steps.setdefault(f"{campaign}/{step}", {})[str(status)] = count
    order = {
        f"{c.key}/{s.key}": i
        for i, (c, s) in enumerate(
            [(c, s) for c in config.campaigns for s in c.steps]
            + [(n.campaign, n.step) for n in config.newsletters]  # after the series
        )
    }
    return Stats(people, steps, step_rates(session), failure_reasons(session), order)
