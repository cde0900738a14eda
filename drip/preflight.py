"""The pre-flight check of `drip send`, run only when something it checks changed.

`drip send` refuses to send from templates `drip check` would reject. Rendering
every answer set of every email takes a second or two, which cron would pay
every few minutes for nothing: so the verdict is remembered in the database
with a fingerprint of campaigns.toml, every template file and drip's version,
and the check runs again only when that fingerprint changes. The renderer (Jinja,
MJML) is loaded only then: an idle cron run pays for a hash and one row.
"""

from __future__ import annotations

import contextlib
import hashlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .config import Config
from .models import Meta

if TYPE_CHECKING:
    from .render import Renderer

VERDICT_KEY = "preflight_passed"


def fingerprint(config: Config) -> str:
    """A hash of everything the check reads: the config file, the templates, drip."""
    digest = hashlib.sha256(config.path.read_bytes())
    templates = config.templates_dir.parent  # emails/ and newsletters/
    for path in sorted(p for p in templates.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(templates)).encode() + b"\0")
        digest.update(path.read_bytes())
    with contextlib.suppress(PackageNotFoundError):  # a bare checkout has no version
        digest.update(version("drip").encode())
    return digest.hexdigest()


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
