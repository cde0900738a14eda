"""Secrets never show in reprs; old keys still verify links already sent."""

from __future__ import annotations

import pytest
from conftest import SECRET
from web_fixtures import make_web, web_project

from drip.settings import Settings
from drip.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, TokenError, Tokens
from drip.transport import SMTPSettings, SMTPTransport

SMTP_PASSWORD = "smtp-pa55word-xyz"
DB_PASSWORD = "db-pa55word-xyz"
OLD_KEY = "an-old-secret-key-abcdefgh"


def test_settings_smtp_settings_and_services_mask_every_secret(tmp_path, sink):
    env = {
        "DRIP_SECRET_KEY": SECRET,
        "DRIP_OLD_SECRET_KEYS": OLD_KEY,
        "DRIP_SMTP_URL": f"smtp://clinic:{SMTP_PASSWORD}@relay.example:587?starttls=required",
        "DRIP_DATABASE_URL": f"postgresql://drip:{DB_PASSWORD}@db.example/drip",
    }
    settings = Settings.from_env(env)
    smtp = SMTPSettings.from_url(env["DRIP_SMTP_URL"])
    assert smtp.password == SMTP_PASSWORD and settings.old_secret_keys == (OLD_KEY,)
    web = make_web(web_project(tmp_path, sink), sink)
    texts = [
        repr(settings),
        str(settings),
        repr(smtp),
        repr(SMTPTransport(smtp).settings),
        repr(web.services),
        str(web.services),
        repr(web.services.tokens),
    ]
    for text in texts:
        for secret in (SECRET, OLD_KEY, SMTP_PASSWORD, DB_PASSWORD):
            assert secret not in text, text
    assert "relay.example" in repr(settings) and "***" in repr(settings)


def test_links_signed_with_an_old_key_still_work_after_rotation(tmp_path, sink):
    old = make_web(web_project(tmp_path / "before", sink), sink)
    old.signup("rot@example.org")
    old.client.post(old.confirm_path("rot@example.org"))
    sub = old.subscriber("rot@example.org")
    before = {p: old.services.tokens.make(p, sub.public_id) for p in (UNSUBSCRIBE, PREFERENCES)}

    # the clinic rotates: a new key, the old one kept for links already in inboxes
    new_key = "a-brand-new-secret-key-0123456789"
    old.project.env["DRIP_SECRET_KEY"] = new_key
    old.project.env["DRIP_OLD_SECRET_KEYS"] = SECRET
    rotated = make_web(old.project, sink)
    rotated.clock.now = old.clock.now
    assert rotated.client.get(f"/p/{before[PREFERENCES]}").status_code == 200
    fresh = rotated.services.tokens.make(UNSUBSCRIBE, sub.public_id)
    assert fresh != before[UNSUBSCRIBE]
    # new links are signed with the new key only
    assert Tokens(new_key).read(UNSUBSCRIBE, fresh) == sub.public_id
    with pytest.raises(TokenError):
        Tokens(SECRET).read(UNSUBSCRIBE, fresh)
    done = rotated.client.post(f"/u/{before[UNSUBSCRIBE]}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert rotated.subscriber("rot@example.org").status == "unsubscribed"

    # once the old key is dropped, its links stop working (and change nothing)
    del old.project.env["DRIP_OLD_SECRET_KEYS"]
    dropped = make_web(old.project, sink)
    assert dropped.client.get(f"/p/{before[PREFERENCES]}").status_code == 400
    assert dropped.client.post(f"/confirm/{Tokens(SECRET).make(CONFIRM, 'x')}").status_code == 400
