"""The append-only audit log: sends, consent, unsubscribes, exports, erasures."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from .models import AuditEntry


def record(
    session: Session,
    at: datetime,
    actor: str,
    action: str,
    subscriber_id: int | None = None,
    **detail: Any,
) -> None:
    """Add an audit entry to the session's transaction (committed with the change)."""
    session.add(
        AuditEntry(
            at=at,
            actor=actor,
            action=action,
            subscriber_id=subscriber_id,
            detail=json.dumps(detail, default=str, sort_keys=True),
        )
    )
