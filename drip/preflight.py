"""The pre-flight check of `drip send`, run only when something it checks changed.

`drip send` refuses to send from templates `drip check` would reject. Rendering
every answer set of every email takes a second or two, which cron would pay
every few minutes for nothing: so the verdict is remembered in the database
with a fingerprint of campaigns.toml, every template file and drip's version,
and the check runs again only when that fingerprint changes. The renderer (Jinja,
MJML) is loaded only then: an idle cron run pays for a hash and one row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .config import Config
from .models import Meta
from .quiet import fingerprint

if TYPE_CHECKING:
    from .render import Renderer

VERDICT_KEY = "preflight_passed"


def passed_before(config: Config, engine: Engine) -> bool:
    """Did these very files, with this drip, pass the check already? (no rendering)"""
    with Session(engine) as session:
        return _passed(session, fingerprint(config))


def _passed(session: Session, print_: str) -> bool:
    passed = session.get(Meta, VERDICT_KEY)
    return passed is not None and passed.value == print_


def preflight(config: Config, engine: Engine, renderer: Renderer | None = None) -> list[str]:
    """The problems that must stop this run; [] when the same files passed before.

    `renderer` is the one the run goes on with, so each template compiles once;
    without it, the check makes its own (only when it has to run).
    """
    print_ = fingerprint(config)
    with Session(engine) as session:
        if _passed(session, print_):
            return []
        from .checks import check_config  # only when something changed: it is not small

        problems = check_config(config, renderer, readability=False).problems
        if not problems:
            session.merge(Meta(key=VERDICT_KEY, value=print_))
            try:
                session.commit()
            except IntegrityError:  # another run stored the same verdict a moment ago
                session.rollback()
    return problems
