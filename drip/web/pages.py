"""What every blueprint's views share: this app's Services and the message page.

Kept apart from app.py (the factory imports the blueprints) so that a blueprint
can use them without importing the factory back.
"""

from __future__ import annotations

from flask import current_app, render_template

from .services import Services


def services() -> Services:
    """The Services this app was built with (create_app stores them)."""
    return current_app.extensions["drip"]  # type: ignore[no-any-return]


def message_page(title: str, text: str, status: int = 200, **extra: object) -> tuple[str, int]:
    """A page that only says something: errors, expired links, limits."""
    return render_template("message.html", title=title, text=text, **extra), status
