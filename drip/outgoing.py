"""One series email for one patient, exactly as `drip send` puts it on the wire.

`drip send` and `drip preview --format eml` both build messages here, so a
preview is byte for byte what a patient gets (but for the date, the random MIME
boundary and the Message-ID's ref).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .config import Campaign, Clinic, Config, Step
from .message import Envelope, compose, return_path, wire_address
from .render import RenderedEmail, Renderer, subscriber_context
from .tokens import Tokens
from .tokens import links as signed_links


@dataclass(frozen=True)
class Outgoing:
    email: RenderedEmail
    envelope: Envelope


def list_headers(clinic: Clinic, unsubscribe_url: str, ref: str) -> dict[str, str]:
    """RFC 2369 / RFC 8058 one-click unsubscribe, and the ref that matches bounces."""
    target = f"<{unsubscribe_url}>"
    if clinic.unsubscribe_mailto:
        target += f", <mailto:{clinic.unsubscribe_mailto}?subject=unsubscribe>"
    return {
        "List-Unsubscribe": target,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "X-Drip-Ref": ref,
    }


def build(
    config: Config,
    renderer: Renderer,
    tokens: Tokens,
    *,
    email: str,
    public_id: str,
    first_name: str | None,
    symptoms: frozenset[str] | set[str],
    campaign: Campaign,
    step: Step,
    ref: str,
    date: datetime,
    sign: Callable[[bytes], bytes] | None = None,
    links: Mapping[str, str] | None = None,
) -> Outgoing:
    """Render `step` for this patient and compose the message; raises on any problem.

    `sign` (DKIM, drip/dkim.py) gets the finished bytes last. `links`: the
    patient's signed links, when the caller made them (tokens.links)."""
    context = subscriber_context(
        config,
        first_name=first_name,
        symptoms=set(symptoms),
        links=links or signed_links(tokens, config.clinic.base_url, public_id),
        campaign=campaign,
        step=step,
    )
    rendered = renderer.render(step, context)
    to = wire_address(email)
    data = compose(
        config.clinic,
        to,
        rendered,
        date=date,
        ref=ref,
        headers=list_headers(config.clinic, context["unsubscribe_url"], ref),
        sign=sign,
    )
    return Outgoing(rendered, Envelope(return_path(config.clinic, ref), to, data))
