"""The public newsletter archive: GET /newsletters and /newsletters/<key>.

Off unless campaigns.toml says `newsletter_archive = true` in [clinic]; then it
lists each newsletter marked `archive = true` once its first copy has gone (and
it was not cancelled). Each is rendered for a neutral reader: no name, no
symptoms, and no personal links (the footer's links go to the sign-up page), so
nothing on these pages belongs to a patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, current_app, g, render_template
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..config import Config, Newsletter
from ..models import Delivery
from ..newsletters import cancelled_keys
from ..render import Renderer, subscriber_context
from ..schedule import SENT
from .services import Services

bp = Blueprint("archive", __name__)
RENDERER = "drip.archive_renderer"
# the email's own <style> blocks and inline styles; nothing else, no scripts
EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


@dataclass(frozen=True)
class Archived:
    newsletter: Newsletter
    sent_on: datetime


def _services() -> Services:
    return current_app.extensions["drip"]  # type: ignore[no-any-return]


def archived(session: Session, config: Config) -> list[Archived]:
    """Newsletters to show, newest first: archive = true, sent, not cancelled."""
    if not config.clinic.newsletter_archive:
        return []
    wanted = {n.campaign_key: n for n in config.newsletters if n.archive}
    if not wanted:
        return []
    cancelled = cancelled_keys(session)
    rows = session.execute(
        select(Delivery.campaign_key, func.min(Delivery.sent_at))
        .where(Delivery.campaign_key.in_(sorted(wanted)), Delivery.status == SENT)
        .group_by(Delivery.campaign_key)
    )
    found = [
        Archived(wanted[key], first)
        for key, first in rows
        if first is not None and wanted[key].key not in cancelled
    ]
    return sorted(found, key=lambda a: a.sent_on, reverse=True)


def neutral_html(config: Config, renderer: Renderer, newsletter: Newsletter) -> str:
    """The newsletter as a reader with no name and no symptoms would see it."""
    signup = f"{config.clinic.base_url}/subscribe"
    context = subscriber_context(
        config,
        first_name=None,
        symptoms=set(),
        links={"unsubscribe_url": signup, "preferences_url": signup},
        campaign=newsletter.campaign,
        step=newsletter.step,
    )
    return renderer.render(newsletter.step, context).html


def _renderer(config: Config) -> Renderer:
    # one renderer per app: each template is compiled once, on first view
    if RENDERER not in current_app.extensions:
        current_app.extensions[RENDERER] = Renderer(config.templates_dir)
    return current_app.extensions[RENDERER]  # type: ignore[no-any-return]


@bp.get("/newsletters")
def index() -> str:
    svc = _services()
    if not svc.config.clinic.newsletter_archive:
        abort(404)
    with Session(svc.engine) as session:
        items = archived(session, svc.config)
    return render_template("newsletters.html", items=items)


@bp.get("/newsletters/<key>")
def show(key: str) -> tuple[str, int, dict[str, str]]:
    svc = _services()
    with Session(svc.engine) as session:
        items = {a.newsletter.key: a for a in archived(session, svc.config)}
    if key not in items:
        abort(404)
    g.csp = EMAIL_CSP
    html = neutral_html(svc.config, _renderer(svc.config), items[key].newsletter)
    return html, 200, {"Content-Type": "text/html; charset=utf-8"}
