"""Jinja templates rendered outside a web request: the built-in transactional
emails (mailer.py) and the signup snippet (snippet.py), from templates/standalone/.

Autoescaped like the pages; loaded from the folder (no Flask app is needed, so
`drip snippet` and the mail worker use them as they are).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

FOLDER = Path(__file__).parent / "templates" / "standalone"


@cache
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(FOLDER),
        autoescape=True,
        undefined=StrictUndefined,  # a missing value is a bug here, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(name: str, **context: object) -> str:
    return environment().get_template(name).render(**context)
