"""What to do about the warning signs a person ticked, for every page that answers a form.

Advice is never held back by the form: the signup page shows it as a box is ticked
(advice.js), and every answer to a form post (success, a form error, a CSRF retry,
a rate limit, a server error) shows it first. When the post cannot be read at all
(too big, broken), the page shows the advice for every warning sign instead: we
cannot know which were ticked, and missing one would be worse than showing all.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Request

from ..config import Config

FIELD = "red_flag"  # the checkbox name on the signup and preferences forms

LEVELS = {
    "emergency": (
        "Call {emergency} now",
        "Call {emergency} or go to the nearest emergency department now. Do not wait for an email.",
    ),
    "urgent": (
        "Get medical care today",
        "Call your doctor today or go to an urgent care "
        "clinic. Do not wait for your next appointment.",
    ),
    "soon": ("See a doctor soon", "Make an appointment with a doctor in the next few days."),
}


@dataclass(frozen=True)
class Advice:
    key: str
    level: str
    label: str
    heading: str
    text: str
    advice: str


def advice_for(config: Config, keys: set[str] | frozenset[str]) -> list[Advice]:
    """Urgent advice for the red flags ticked, the most urgent first."""
    order = list(LEVELS)
    emergency = config.clinic.emergency_number
    found = []
    for key, flag in config.red_flags.items():
        if key in keys:
            heading, text = LEVELS.get(flag.level, LEVELS["urgent"])
            found.append(
                Advice(
                    key,
                    flag.level,
                    flag.label,
                    heading.format(emergency=emergency),
                    text.format(emergency=emergency),
                    flag.advice,
                )
            )
    return sorted(found, key=lambda a: order.index(a.level) if a.level in order else 1)


def every_advice(config: Config) -> list[Advice]:
    """All warning signs, for the page's ready-made blocks and unreadable posts."""
    return advice_for(config, set(config.red_flags))


def advice_for_post(config: Config, request: Request) -> tuple[list[Advice], bool]:
    """(advice, unknown) for the form this request posted; unknown means the ticks
    could not be read, and the advice is for every warning sign."""
    if request.method != "POST":
        return [], False
    try:
        ticked = {v for v in request.form.getlist(FIELD) if v in config.red_flags}
    except Exception:  # too big or malformed: werkzeug raises many kinds
        return every_advice(config), True
    return advice_for(config, ticked), False
