"""The patient-facing web side: signup, confirmation, unsubscribe, preferences."""

from __future__ import annotations

from .app import build_services, create_app
from .services import Services

__all__ = ["Services", "build_services", "create_app"]
