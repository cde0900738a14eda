"""The HTML a clinic pastes into its own website to show the signup form there.

It posts to drip's /subscribe. A static page cannot carry drip's CSRF token, so
drip accepts the post at once only from origins listed in DRIP_EMBED_ORIGINS (the
browser's Origin header, which another site cannot forge in a visitor's browser).
From anywhere else the visitor lands on drip's own form, filled in with their
answers, and presses the button once more: nothing is stored before that.

The time zone is the clinic's unless the visitor's browser runs the two-line
script; drip checks it either way. The consent wording and its version are the
current ones: print the snippet again after changing the clinic name or wording.
The form has `novalidate`: a browser's own checks (a consent box left empty)
would stop the post before drip could show the advice for a ticked warning sign.
"""

from __future__ import annotations

from ..config import Config
from .consent import PRIVACY_NOTICE, consent_text, consent_version
from .forms import HONEYPOT
from .standalone import render


def signup_snippet(config: Config, url: str | None = None) -> str:
    """The form's HTML (templates/standalone/snippet.html), posting to `url` or base_url."""
    return render(
        "snippet.html",
        clinic=config.clinic,
        base=(url or config.clinic.base_url).rstrip("/"),
        symptoms=config.symptoms,
        red_flags=config.red_flags,
        consent_version=consent_version(config),
        consent=consent_text(config),
        privacy=PRIVACY_NOTICE,
        honeypot=HONEYPOT,
    )
