"""What each button on the preferences page does: one small handler per action.

A handler changes the subscriber through flows and says what comes next; the
route (routes.preferences) commits and turns that into a page. Handlers render
nothing and never commit, so each is a few lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from .. import newsletters
from ..models import Subscriber
from . import flows
from .advice import Advice, advice_for
from .forms import FormData, read_choice, read_topics, read_weeks

if TYPE_CHECKING:  # for types only: services imports the worker at run time
    from .services import Services


@dataclass(frozen=True)
class Change:
    """One preferences form post: whose, when, what the form says."""

    svc: Services
    session: Session
    sub: Subscriber
    form: FormData
    now: datetime


@dataclass(frozen=True)
class Done:
    """Saved: back to the preferences page, saying so (routes.DONE[key]; "" says nothing)."""

    key: str


@dataclass(frozen=True)
class Again:
    """Nothing saved: the preferences page again, with what to fix (status 400)."""

    notice: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    advice: list[Advice] = field(default_factory=list)


@dataclass(frozen=True)
class Show:
    """Saved, and a page of its own; `wake`: the worker sends an urgent email now."""

    template: str
    context: dict[str, object] = field(default_factory=dict)
    wake: bool = False


Outcome = Done | Again | Show


def answers(c: Change) -> Outcome:
    config = c.svc.config
    topics = read_topics(c.form, config)
    if topics.errors:
        return Again(errors=topics.errors, advice=advice_for(config, topics.symptoms))
    new_flags = flows.update_topics(
        c.session, config, c.sub, topics.symptoms, topics.timezone, c.now
    )
    if new_flags:  # the urgent email goes at once, off the request's thread
        advice = advice_for(config, new_flags)
        return Show("check_inbox.html", {"advice": advice, "saved": True}, wake=True)
    return Done("answers")


def pause(c: Change) -> Outcome:
    weeks = read_weeks(c.form)
    if weeks is None:
        return Again(notice="Please choose how many weeks to pause.")
    flows.pause(c.session, c.svc.config, c.sub, weeks, c.now)
    return Done("paused")


def resume(c: Change) -> Outcome:
    flows.pause(c.session, c.svc.config, c.sub, None, c.now)
    return Done("resumed")


def _campaign(c: Change) -> str | None:
    return read_choice(c.form, "campaign", [k.key for k in c.svc.config.drip_campaigns()])


def leave(c: Change) -> Outcome:
    key = _campaign(c)
    left = key is not None and flows.leave_campaign(c.session, c.svc.config, c.sub, key, c.now)
    return Done("left" if left else "")


def join(c: Change) -> Outcome:
    key = _campaign(c)
    joined = key is not None and flows.rejoin_campaign(c.session, c.svc.config, c.sub, key, c.now)
    return Done("joined" if joined else "")


def news_off(c: Change) -> Outcome:  # newsletters only; the series go on
    newsletters.set_opt_out(c.session, c.sub, True, c.now)
    return Done("news_off")


def news_on(c: Change) -> Outcome:
    newsletters.set_opt_out(c.session, c.sub, False, c.now)
    return Done("news_on")


def stop(c: Change) -> Outcome:
    flows.unsubscribe(c.session, c.svc.config, c.sub.public_id, c.now, "preferences")
    return Show("unsubscribed.html")


# the form's `action` button values
ACTIONS: dict[str, Callable[[Change], Outcome]] = {
    "answers": answers,
    "pause": pause,
    "resume": resume,
    "leave": leave,
    "join": join,
    "stop": stop,
    "news_off": news_off,
    "news_on": news_on,
}
