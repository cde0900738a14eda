"""Helpers for the deliverability tests: real sends, report samples, mailboxes."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

from conftest import FIXTURES, Project
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from drip.models import AuditEntry, Delivery, Subscriber

MON_10 = "2026-06-01T15:00:00Z"
WED_10 = "2026-06-03T15:00:00Z"
MON2_10 = "2026-06-08T15:00:00Z"
LATER = "2026-06-05T12:00:00Z"
SAMPLES = FIXTURES / "bounces"


def send_to(project: Project, *addresses: str, now: str = MON_10) -> None:
    for address in addresses:
        result = project.cli(
            "subscribers", "add", address, "--symptoms", "night_cramps", "--confirmed",
            "--now", MON_10,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    result = project.cli("send", "--now", now)
    assert result.exit_code == 0, result.output


def session(project: Project) -> Session:
    return Session(create_engine(project.database_url))


def refs(project: Project, address: str) -> list[str]:
    """The refs of the deliveries sent to `address`, oldest first."""
    with session(project) as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
        assert sub is not None
        return list(
            s.scalars(
                select(Delivery.ref)
                .where(Delivery.subscriber_id == sub.id, Delivery.status == "sent")
                .order_by(Delivery.id)
            )
        )


def status(project: Project, address: str) -> str:
    with session(project) as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
        assert sub is not None
        return sub.status


def audit(project: Project) -> list[tuple[str, dict[str, object]]]:
    with session(project) as s:
        return [
            (e.action, json.loads(e.detail))
            for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]


def sample(name: str, ref: str = "0" * 32, email: str = "pat@example.org") -> bytes:
    raw = (SAMPLES / name).read_bytes()
    return raw.replace(b"@@REF@@", ref.encode()).replace(b"@@EMAIL@@", email.encode())


def write_mbox(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.mbox(path)
    for raw in messages:
        box.add(raw)
    box.flush()
    box.close()
    return path


def write_maildir(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(path, create=True)
    for raw in messages:
        box.add(raw)
    box.close()
    return path
