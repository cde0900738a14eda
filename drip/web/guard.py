"""Is this form post drip's own? The origin and CSRF check every form's view runs.

The signed double-submit token itself is csrf.py (no Flask); this reads it and
the Origin/Referer headers from the request. Logged when a post is refused.
"""

from __future__ import annotations

import logging

from flask import current_app, request

from .csrf import COOKIE, FIELD, Csrf
from .options import origin_of
from .pages import services

log = logging.getLogger("drip.web")


def request_origin() -> str | None:
    """Origin header, else the Referer's origin; None when the browser sent neither."""
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return origin_of(origin) or "invalid"
    referer = request.headers.get("Referer")
    return origin_of(referer) if referer else None


def own_origins() -> set[str]:
    found = {origin_of(services().config.clinic.base_url), origin_of(request.host_url)}
    return {o for o in found if o}


def csrf_ok() -> bool:
    """drip's own form, from this browser (see csrf.py); logged when not."""
    origin = request_origin()
    own = origin in own_origins()
    if origin is not None and not own:
        log.info("form post from foreign origin %s refused", origin)
        return False
    csrf: Csrf = current_app.extensions["drip.csrf"]
    verdict = csrf.check(request.form.get(FIELD), request.cookies.get(COOKIE), own)
    if not verdict.ok:
        log.info("CSRF check failed on %s: %s", request.url_rule, verdict.reason)
    return verdict.ok
