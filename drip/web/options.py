"""Web settings from the environment, with their defaults, in one place.

Kept apart from drip.settings because only `drip serve`, `drip run` and the demo
read them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from ..durations import parse_duration
from ..mailqueue import LimitsError, MailLimits
from ..rights import PENDING_TTL


class OptionsError(ValueError):
    """A web setting in the environment is malformed; the message says which."""


@dataclass(frozen=True)
class Limit:
    """At most `count` events per `seconds`, per key (an IP or an address)."""

    count: int
    seconds: float


@dataclass(frozen=True)
class WebOptions:
    # reverse proxies in front of drip whose X-Forwarded-* headers are believed
    trusted_proxies: int = 0
    # origins (scheme://host[:port]) of the clinic's own sites allowed to post the
    # signup snippet without a CSRF token
    embed_origins: frozenset[str] = field(default_factory=frozenset)
    # signup POSTs per client IP, and per email address, across all of drip
    signups_per_ip: Limit = Limit(20, 3600)
    signups_per_address: Limit = Limit(5, 3600)
    # at most one confirmation (or "already signed up") email per address per window
    confirm_interval: timedelta = timedelta(minutes=15)
    # unconfirmed signups are purged after this long
    pending_ttl: timedelta = PENDING_TTL
    # how long the signup form stays valid once shown (its CSRF token's age)
    form_max_age: int = 12 * 3600
    # the whole request body; the signup form is well under 2 KiB
    max_body: int = 16 * 1024
    # seconds a confirmation waits for a running `drip send` before leaving the
    # urgent email to the next scheduled run
    send_lock_wait: float = 3.0
    # mail bombing: emails per mailbox per day, and per hour for the whole site
    mail_limits: MailLimits = field(default_factory=MailLimits)
    # a preferences link older than this asks for a fresh one by email first
    preferences_max_age: timedelta = timedelta(days=30)
    # the mail worker wakes at once on a new email, and also every this many seconds
    mail_poll_seconds: float = 5.0
    # a signup's answer never comes sooner than this, so its timing does not tell
    # whether the address is new, known or suppressed
    signup_answer_seconds: float = 0.2

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WebOptions:
        env = dict(os.environ if env is None else env)
        proxies = env.get("DRIP_TRUSTED_PROXIES", "0").strip() or "0"
        if not proxies.isdigit() or int(proxies) > 10:
            raise OptionsError(
                f"DRIP_TRUSTED_PROXIES must be the number of proxies in front of drip "
                f"(0-10), not {proxies!r}"
            )
        origins = parse_origins(env.get("DRIP_EMBED_ORIGINS", ""))
        try:
            limits = MailLimits.from_env(env)
        except LimitsError as exc:
            raise OptionsError(str(exc)) from None
        max_age = env.get("DRIP_PREFERENCES_LINK_MAX_AGE", "").strip()
        try:
            age = parse_duration(max_age) if max_age else cls.preferences_max_age
        except ValueError as exc:
            raise OptionsError(f"DRIP_PREFERENCES_LINK_MAX_AGE: {exc}") from None
        return cls(
            trusted_proxies=int(proxies),
            embed_origins=origins,
            mail_limits=limits,
            preferences_max_age=age,
        )


def parse_origins(text: str) -> frozenset[str]:
    """'https://a.example, https://b.example' -> the set of normalized origins."""
    found = set()
    for item in text.replace(",", " ").split():
        origin = origin_of(item)
        if origin is None or origin != item.rstrip("/").lower():
            raise OptionsError(
                f"DRIP_EMBED_ORIGINS: {item!r} is not an origin like https://www.clinic.example"
            )
        found.add(origin)
    return frozenset(found)


def origin_of(url: str) -> str | None:
    """scheme://host[:port] of an absolute http(s) URL, lower-cased; None otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")
