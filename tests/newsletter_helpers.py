"""Helpers for the newsletter tests: add a [[newsletter]] to a test project, read rows."""

from __future__ import annotations

import shutil
from collections import Counter

from conftest import FIXTURES, Project
from sqlalchemy import select
from sqlalchemy.orm import Session

from drip.db import make_engine
from drip.models import Delivery, Subscriber

TEMPLATE = FIXTURES / "newsletters" / "news.mjml"


def add_newsletter(
    project: Project,
    key: str = "2026-06-news",
    send_at: str | None = "2026-06-02 10:00",
    audience: str | None = None,
    archive: bool = False,
    subject: str = "News from the clinic",
    name: str = "Monthly news",
) -> None:
    """Append a [[newsletter]] using the fixture template (templates/newsletters/news)."""
    folder = project.root / "templates" / "newsletters"
    folder.mkdir(exist_ok=True)
    shutil.copy(TEMPLATE, folder / "news.mjml")
    lines = [
        "",
        "[[newsletter]]",
        f'key = "{key}"',
        f'name = "{name}"',
        f'subject = "{subject}"',
        'preheader = "A few tips for this month"',
        'template = "news"',
    ]
    if audience:
        lines.append(f"audience = {audience}")
    if send_at:
        lines.append(f'send_at = "{send_at}"')
    if archive:
        lines.append("archive = true")
    with project.config.open("a") as f:
        f.write("\n".join(lines) + "\n")


def no_series(project: Project) -> None:
    """Leave the fixture's series to walking_cramps only, so it does not share the
    min_gap with the newsletter for the night_cramps subscribers these tests use."""
    project.edit_config(
        'audience = { any = ["night_cramps", "walking_cramps", "heavy_legs"] }',
        'audience = { any = ["walking_cramps"] }',
    )


def add(
    project: Project, address: str = "pat@example.org", symptoms: str = "night_cramps", *extra: str
) -> None:
    result = project.cli(
        "subscribers", "add", address, "--symptoms", symptoms, "--confirmed",
        "--now", "2026-06-01T12:00:00Z", *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def newsletter_rows(project: Project, key: str = "2026-06-news") -> dict[str, str]:
    """address -> status of their delivery row for newsletter `key`."""
    engine = make_engine(project.database_url)
    with Session(engine) as s:
        found = {
            email: status
            for email, status in s.execute(
                select(Subscriber.email, Delivery.status)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .where(Delivery.campaign_key == "newsletter:" + key, Delivery.step_key == key)
            )
        }
    engine.dispose()
    return found


def recipients(sink, subject: str = "News from the clinic") -> Counter[str]:
    return Counter(m.recipient for m in sink.received if m.subject == subject)
