"""Reading the signup and preferences forms: limits, cleaning, messages to show.

No I/O here: a form's fields go in, cleaned values or friendly errors come out,
so every rule can be tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..config import Config
from ..subscribers import InvalidSubscriber, clean_name, normalize_email
from .timezones import is_known_zone

MAX_EMAIL = 254  # RFC 5321 path limit
MAX_NAME = 100
MAX_KEY = 64
HONEYPOT = "website"  # bots fill in fields with names like this; people never see it
PAUSE_WEEKS = (1, 2, 4, 8, 12)


class FormData(Protocol):
    """What werkzeug's MultiDict offers (and a plain test double can)."""

    def get(self, key: str, /) -> str | None: ...

    def getlist(self, key: str) -> list[str]: ...


@dataclass
class SignupForm:
    """The values as typed (to show the form again) and, if valid, the cleaned ones."""

    email: str = ""
    first_name: str = ""
    timezone: str = ""
    symptoms: set[str] = field(default_factory=set)
    red_flags: set[str] = field(default_factory=set)
    consent: bool = False
    consent_version: str = ""
    honeypot: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    clean_email: str = ""
    clean_name: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def answers(self) -> set[str]:
        """Symptom and red-flag keys together, as drip stores them."""
        return self.symptoms | self.red_flags


def _text(form: FormData, key: str) -> str:
    return (form.get(key) or "").strip()


def _keys(form: FormData, key: str, allowed: Mapping[str, object]) -> tuple[set[str], bool]:
    """The ticked keys that exist, and whether anything unknown or oversized came in."""
    values = form.getlist(key)
    chosen = {v for v in values if v in allowed}
    bad = len(values) > len(allowed) or len(chosen) != len(set(values))
    return chosen, bad


def read_signup(form: FormData, config: Config, current_version: str) -> SignupForm:
    """Validate a signup POST. Errors are keyed by field and safe to show.

    A form without a time zone field at all (a snippet on a page whose scripts
    are off) gets the clinic's; a field sent with a value must be a real zone.
    """
    zone = form.get("timezone")
    result = SignupForm(
        email=_text(form, "email")[: MAX_EMAIL + 1],
        first_name=_text(form, "first_name")[: MAX_NAME + 1],
        timezone=config.clinic.timezone if zone is None else zone.strip()[: MAX_KEY + 1],
        consent=form.get("consent") == "yes",
        consent_version=_text(form, "consent_version")[:MAX_KEY],
        honeypot=bool(_text(form, HONEYPOT)),
    )
    errors = result.errors
    result.symptoms, bad_symptoms = _keys(form, "symptom", config.symptoms)
    result.red_flags, bad_flags = _keys(form, "red_flag", config.red_flags)
    if bad_symptoms or bad_flags:
        errors["symptom"] = "Some of the choices sent are not on this form. Please choose again."

    if not result.email:
        errors["email"] = "Please enter your email address."
    elif len(result.email) > MAX_EMAIL:
        errors["email"] = f"That email address is too long (at most {MAX_EMAIL} characters)."
    else:
        try:
            result.clean_email = normalize_email(result.email)
        except InvalidSubscriber:
            errors["email"] = (
                "That does not look like an email address. Please check it, "
                "for example name@example.com."
            )

    if len(result.first_name) > MAX_NAME:
        errors["first_name"] = f"Please keep your first name under {MAX_NAME} characters."
    else:
        result.clean_name = clean_name(result.first_name)

    if not is_known_zone(result.timezone):
        errors["timezone"] = "Please choose your time zone from the list."

    if not result.consent:
        errors["consent"] = "Please tick the box to agree, so we can send you emails."
    elif result.consent_version and result.consent_version != current_version:
        errors["consent"] = (
            "The wording of this agreement has changed. Please read it and tick the box again."
        )
        result.consent = False
    return result


@dataclass
class TopicsForm:
    symptoms: set[str]
    timezone: str
    errors: dict[str, str]


def read_topics(form: FormData, config: Config) -> TopicsForm:
    """The preferences page's 'your answers' section."""
    errors: dict[str, str] = {}
    symptoms, bad_symptoms = _keys(form, "symptom", config.symptoms)
    flags, bad_flags = _keys(form, "red_flag", config.red_flags)
    if bad_symptoms or bad_flags:
        errors["symptom"] = "Some of the choices sent are not on this form. Please choose again."
    timezone = _text(form, "timezone")
    if not is_known_zone(timezone):
        errors["timezone"] = "Please choose your time zone from the list."
    return TopicsForm(symptoms | flags, timezone, errors)


def read_weeks(form: FormData) -> int | None:
    raw = _text(form, "weeks")
    return int(raw) if raw.isdigit() and int(raw) in PAUSE_WEEKS else None


def read_choice(form: FormData, key: str, allowed: Sequence[str]) -> str | None:
    value = _text(form, key)
    return value if value in allowed else None
