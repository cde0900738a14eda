"""Only POST changes anything: link checkers send HEAD, browsers OPTIONS, bots PUT/DELETE."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from web_fixtures import Web, web_fixture  # noqa: F401

from drip.models import AuditEntry, Delivery, Enrollment, Subscriber
from drip.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE

NOT_POST = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")


def snapshot(web: Web) -> tuple[object, ...]:
    """Everything a page could change, in one comparable value."""
    with Session(web.services.engine) as s:
        subs = [
            (x.email, x.status, x.confirmed_at, x.unsubscribed_at, x.withdrawn_at, x.paused_until)
            for x in s.scalars(select(Subscriber).order_by(Subscriber.id))
        ]
        enrolled = [(e.campaign_key, e.state) for e in s.scalars(select(Enrollment))]
        sent = s.scalar(select(func.count()).select_from(Delivery))
        audits = s.scalar(select(func.count()).select_from(AuditEntry))
    return subs, enrolled, sent, audits


def token_urls(web: Web, address: str) -> dict[str, str]:
    sub = web.subscriber(address)
    assert sub is not None
    make = web.services.tokens.make
    return {
        "confirm": f"/confirm/{make(CONFIRM, sub.public_id)}",
        "unsubscribe": f"/u/{make(UNSUBSCRIBE, sub.public_id)}",
        "preferences": f"/p/{make(PREFERENCES, sub.public_id)}",
    }


@pytest.mark.parametrize("method", NOT_POST)
def test_no_method_but_post_changes_a_pending_signup(web: Web, method: str):
    web.signup("pending@example.org")
    before = snapshot(web)
    for name, url in token_urls(web, "pending@example.org").items():
        answer = web.client.open(url, method=method, data={"List-Unsubscribe": "One-Click"})
        if method in ("PUT", "DELETE"):
            assert answer.status_code == 405, name
            assert "use the button on the page" in answer.text
        else:
            assert answer.status_code < 400, (name, answer.status_code)
        assert snapshot(web) == before, f"{method} {name} changed something"
    assert web.subscriber("pending@example.org").status == "pending"
    # the POST still works
    assert web.client.post(token_urls(web, "pending@example.org")["confirm"]).status_code == 200
    assert web.subscriber("pending@example.org").status == "active"


@pytest.mark.parametrize("method", NOT_POST)
def test_no_method_but_post_changes_an_active_subscriber(web: Web, method: str):
    web.signup("active@example.org")
    web.client.post(web.confirm_path("active@example.org"))
    before = snapshot(web)
    urls = token_urls(web, "active@example.org")
    form = {"List-Unsubscribe": "One-Click", "action": "stop", "button": "1"}
    for name, url in urls.items():
        answer = web.client.open(url, method=method, data=form)
        refused = method in ("PUT", "DELETE")
        assert answer.status_code == 405 if refused else answer.status_code < 400, name
        assert snapshot(web) == before, f"{method} {name} changed something"
    signup = web.client.open("/subscribe", method=method, data={"email": "x@example.org"})
    assert signup.status_code == (405 if method in ("PUT", "DELETE") else 200)
    assert snapshot(web) == before
    assert web.subscriber("active@example.org").status == "active"
    answer = web.client.post(urls["unsubscribe"], data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert web.subscriber("active@example.org").status == "unsubscribed"


def test_head_gets_the_same_status_as_get_and_no_body(web: Web):
    web.signup("head@example.org")
    for url in token_urls(web, "head@example.org").values():
        get, head = web.client.get(url), web.client.head(url)
        assert head.status_code == get.status_code and head.data == b""
    options = web.client.options(token_urls(web, "head@example.org")["unsubscribe"])
    assert set(options.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST", "HEAD"}
