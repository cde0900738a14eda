"""A stranger who signs up someone else's address changes nothing until the owner
of the address confirms with the link sent for that very signup."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from web_fixtures import Web, web_fixture  # noqa: F401

from drip.models import AuditEntry, Enrollment, PendingChange
from drip.tokens import UNSUBSCRIBE

STRANGER = {"REMOTE_ADDR": "198.51.100.66"}


def stored(web: Web, address: str) -> tuple[object, ...]:
    sub = web.subscriber(address)
    assert sub is not None
    return (
        sub.status,
        sub.first_name,
        sub.timezone,
        sorted(sub.symptom_keys),
        sub.consent_at,
        sub.consent_ip,
        sub.consent_user_agent,
        sub.consent_text_version,
    )


def stranger_signup(web: Web, address: str):  # type: ignore[no-untyped-def]
    hidden = web.form()
    data = {
        **hidden,
        "email": address,
        "first_name": "Mallory",
        "timezone": "Asia/Tokyo",
        "consent": "yes",
        "symptom": ["heavy_legs"],
    }
    return web.client.post(
        "/subscribe", data=data, environ_base=STRANGER, headers={"User-Agent": "evil/1.0"}
    )


def test_a_stranger_cannot_overwrite_a_pending_signup(web: Web):
    web.signup("owner@example.org", symptoms=("night_cramps",))
    first_link = web.confirm_path("owner@example.org")
    before = stored(web, "owner@example.org")
    web.clock.advance(minutes=20)  # past the one-email window: the stranger's email goes
    assert stranger_signup(web, "owner@example.org").status_code == 200
    assert stored(web, "owner@example.org") == before
    second_link = web.confirm_path("owner@example.org")
    assert second_link != first_link
    # the owner confirms their own signup: their own answers
    assert web.client.get(second_link).status_code == 200  # shows the button, no change
    assert stored(web, "owner@example.org") == before
    web.client.post(first_link)
    sub = web.subscriber("owner@example.org")
    assert sub.status == "active" and sub.first_name == "Pat"
    assert sub.symptom_keys == {"night_cramps"} and sub.timezone == "America/Chicago"


def test_a_stranger_cannot_change_an_unsubscribed_person_until_the_owner_confirms(web: Web):
    web.signup("left@example.org", symptoms=("night_cramps",))
    web.client.post(web.confirm_path("left@example.org"))
    sub = web.subscriber("left@example.org")
    web.client.post(
        f"/u/{web.services.tokens.make(UNSUBSCRIBE, sub.public_id)}",
        data={"List-Unsubscribe": "One-Click"},
    )
    before = stored(web, "left@example.org")
    web.clock.advance(days=1)
    assert stranger_signup(web, "left@example.org").status_code == 200
    assert stored(web, "left@example.org") == before  # status, answers, consent: all kept
    with Session(web.services.engine) as s:
        assert {e.state for e in s.scalars(select(Enrollment))} == {"left"}
        (change,) = s.scalars(select(PendingChange)).all()
        assert change.first_name == "Mallory" and change.consent_ip == "198.51.100.66"
    # the owner of the mailbox is the only one who can make it count
    link = web.confirm_path("left@example.org")
    assert web.client.post(link).status_code == 200
    sub = web.subscriber("left@example.org")
    assert sub.status == "active" and sub.symptom_keys == {"heavy_legs"}
    assert sub.first_name == "Mallory" and sub.timezone == "Asia/Tokyo"
    assert sub.consent_ip == "198.51.100.66" and sub.consent_at == web.clock.now
    with Session(web.services.engine) as s:
        assert s.scalars(select(PendingChange)).all() == []
        actions = [a.action for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert "signup.change_pending" in actions and actions.count("consent.given") == 2
    # and the link works once
    again = web.client.post(link)
    assert again.status_code == 200 and "already signed up" in again.text
