"""The consent text patients agree to, and its version.

GDPR Art. 7 and 9: consent to process health data must be explicit and provable,
so drip records which text each person agreed to. The version is the date the
wording was last changed plus a hash of the exact words shown (clinic name
included), so any edit, here or in campaigns.toml, yields a new version and an
old record still points at the text it was given for. The text itself is also
written into the audit log with each signup.
"""

from __future__ import annotations

import hashlib

from ..config import Config

# Change the date whenever the wording below changes.
WORDING_DATE = "2026-06-01"

CONSENT_TEMPLATE = (
    "I agree that {clinic} may keep my email address and the answers on this form, "
    "which are about my health, and use them to send me education emails that fit "
    "my answers. I can stop the emails or ask for my data to be deleted at any time."
)

PRIVACY_NOTICE = (
    "We use your answers only to choose which emails to send you. We do not sell or "
    "share them, and we show no ads or trackers. Every email has links to change "
    "your answers, pause, or unsubscribe in two clicks. These emails are general "
    "information, not medical advice."
)


def consent_text(config: Config) -> str:
    return CONSENT_TEMPLATE.format(clinic=config.clinic.name)


def consent_version(config: Config) -> str:
    digest = hashlib.sha256(consent_text(config).encode("utf-8")).hexdigest()[:10]
    return f"{WORDING_DATE}.{digest}"
